pub mod realistic;
