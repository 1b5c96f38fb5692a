//! The TDX CC event log (ACPI CCEL table's log area), in the TCG PC Client
//! crypto-agile format (TCG PC Client Platform Firmware Profile, §10.2):
//!
//! * first a legacy `TCG_PCClientPCREvent` (index u32, type u32, SHA-1
//!   digest [20], size u32, data) holding `TCG_EfiSpecIdEvent`
//!   ("Spec ID Event03", the digest algorithms and sizes in use);
//! * then `TCG_PCR_EVENT2`: index u32, type u32, digest count u32,
//!   (algorithm u16, digest) × count, size u32, data.
//!
//! The index is the measurement register: 0 = MRTD, 1..=4 = RTMR0..3
//! (TDX guest-host communication interface, CC measurement mapping).
//! Replay extends each RTMR from zero: `RTMR = SHA-384(RTMR ‖ digest)`.
//! The log area is padded (0xFF or 0x00) after the last event.

use aws_lc_rs::digest;
use serde::Serialize;

use crate::{perr, ParseError, Reader};

const EV_NO_ACTION: u32 = 0x3;
const TPM_ALG_SHA384: u16 = 0x000c;
const MAX_EVENT_DATA: usize = 16 * 1024 * 1024;

/// One measured event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Measurement register index (1..=4 = RTMR0..3).
    pub index: u32,
    #[serde(rename = "type")]
    pub event_type: u32,
    pub type_name: &'static str,
    /// SHA-384 digest (hex).
    #[serde(serialize_with = "hex_ser")]
    pub digest: Vec<u8>,
    /// Event data (hex).
    #[serde(serialize_with = "hex_ser")]
    pub data: Vec<u8>,
}

fn hex_ser<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

/// Names of the event types CC firmware emits (TCG PFP §10.4.1).
pub fn type_name(t: u32) -> &'static str {
    match t {
        0x0000_0001 => "EV_POST_CODE",
        0x0000_0003 => "EV_NO_ACTION",
        0x0000_0004 => "EV_SEPARATOR",
        0x0000_0005 => "EV_ACTION",
        0x0000_0006 => "EV_EVENT_TAG",
        0x0000_0007 => "EV_S_CRTM_CONTENTS",
        0x0000_0008 => "EV_S_CRTM_VERSION",
        0x0000_0009 => "EV_CPU_MICROCODE",
        0x0000_000A => "EV_PLATFORM_CONFIG_FLAGS",
        0x0000_000B => "EV_TABLE_OF_DEVICES",
        0x0000_000C => "EV_COMPACT_HASH",
        0x0000_000D => "EV_IPL",
        0x0000_000E => "EV_IPL_PARTITION_DATA",
        0x0000_000F => "EV_NONHOST_CODE",
        0x0000_0010 => "EV_NONHOST_CONFIG",
        0x0000_0011 => "EV_NONHOST_INFO",
        0x0000_0012 => "EV_OMIT_BOOT_DEVICE_EVENTS",
        0x8000_0001 => "EV_EFI_VARIABLE_DRIVER_CONFIG",
        0x8000_0002 => "EV_EFI_VARIABLE_BOOT",
        0x8000_0003 => "EV_EFI_BOOT_SERVICES_APPLICATION",
        0x8000_0004 => "EV_EFI_BOOT_SERVICES_DRIVER",
        0x8000_0005 => "EV_EFI_RUNTIME_SERVICES_DRIVER",
        0x8000_0006 => "EV_EFI_GPT_EVENT",
        0x8000_0007 => "EV_EFI_ACTION",
        0x8000_0008 => "EV_EFI_PLATFORM_FIRMWARE_BLOB",
        0x8000_0009 => "EV_EFI_HANDOFF_TABLES",
        0x8000_000A => "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
        0x8000_000B => "EV_EFI_HANDOFF_TABLES2",
        0x8000_000C => "EV_EFI_VARIABLE_BOOT2",
        0x8000_00E0 => "EV_EFI_VARIABLE_AUTHORITY",
        0x8000_00E1 => "EV_EFI_SPDM_FIRMWARE_BLOB",
        0x8000_00E2 => "EV_EFI_SPDM_FIRMWARE_CONFIG",
        _ => "unknown",
    }
}

/// A parsed event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    pub events: Vec<Event>,
}

impl EventLog {
    pub fn parse(b: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(b, "CC event log");
        // The Spec ID event: its algorithm list gives every digest size.
        r.u32("spec id index")?;
        let t = r.u32("spec id type")?;
        if t != EV_NO_ACTION {
            return Err(perr(
                "CC event log",
                format!("first event type {t:#x} is not EV_NO_ACTION (Spec ID)"),
            ));
        }
        r.take(20, "spec id digest")?;
        let n = r.u32("spec id size")? as usize;
        let spec = r.take(n, "spec id event")?;
        let mut s = Reader::new(spec, "TCG_EfiSpecIdEvent");
        if s.take(16, "signature")? != b"Spec ID Event03\0" {
            return Err(perr(
                "TCG_EfiSpecIdEvent",
                "signature is not \"Spec ID Event03\"",
            ));
        }
        s.take(8, "platform class, version, uintn size")?;
        let algs = s.u32("number of algorithms")? as usize;
        if algs == 0 || algs > 16 {
            return Err(perr(
                "TCG_EfiSpecIdEvent",
                format!("{algs} digest algorithms"),
            ));
        }
        let mut sizes = Vec::with_capacity(algs);
        for _ in 0..algs {
            sizes.push((s.u16("algorithm id")?, s.u16("digest size")? as usize));
        }

        let mut events = Vec::new();
        while r.rest().len() >= 8 {
            let head = &r.rest()[..8];
            if head.iter().all(|b| *b == 0xff) || head.iter().all(|b| *b == 0) {
                break; // padding after the last event
            }
            let index = r.u32("event index")?;
            let event_type = r.u32("event type")?;
            let count = r.u32("digest count")? as usize;
            if count == 0 || count > algs {
                return Err(perr(
                    "CC event log",
                    format!("event {} has {count} digests", events.len()),
                ));
            }
            let mut sha384 = None;
            for _ in 0..count {
                let alg = r.u16("digest algorithm")?;
                let size = sizes
                    .iter()
                    .find(|(a, _)| *a == alg)
                    .map(|(_, n)| *n)
                    .ok_or_else(|| {
                        perr(
                            "CC event log",
                            format!(
                                "digest algorithm {alg:#06x} not declared in the Spec ID event"
                            ),
                        )
                    })?;
                let d = r.take(size, "digest")?;
                if alg == TPM_ALG_SHA384 {
                    sha384 = Some(d.to_vec());
                }
            }
            let size = r.u32("event size")? as usize;
            if size > MAX_EVENT_DATA {
                return Err(perr("CC event log", format!("event data of {size} bytes")));
            }
            let data = r.take(size, "event data")?.to_vec();
            if event_type == EV_NO_ACTION {
                continue;
            }
            let digest = sha384.ok_or_else(|| {
                perr(
                    "CC event log",
                    format!("event {} has no SHA-384 digest", events.len()),
                )
            })?;
            events.push(Event {
                index,
                event_type,
                type_name: type_name(event_type),
                digest,
                data,
            });
        }
        Ok(Self { events })
    }

    /// RTMR0..3 after extending every event of index 1..=4 from zero.
    pub fn replay(&self) -> [[u8; 48]; 4] {
        let mut rtmr = [[0u8; 48]; 4];
        for e in &self.events {
            let Some(i) = (e.index as usize).checked_sub(1).filter(|i| *i < 4) else {
                continue;
            };
            let mut ctx = digest::Context::new(&digest::SHA384);
            ctx.update(&rtmr[i]);
            ctx.update(&e.digest);
            rtmr[i].copy_from_slice(ctx.finish().as_ref());
        }
        rtmr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(events: &[(u32, u32, [u8; 48], &[u8])]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
        b.extend_from_slice(&[0; 20]);
        let mut spec = b"Spec ID Event03\0".to_vec();
        spec.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 2]);
        spec.extend_from_slice(&1u32.to_le_bytes());
        spec.extend_from_slice(&[0x0c, 0, 48, 0, 0]);
        b.extend_from_slice(&(spec.len() as u32).to_le_bytes());
        b.extend_from_slice(&spec);
        for (index, ty, d, data) in events {
            b.extend_from_slice(&index.to_le_bytes());
            b.extend_from_slice(&ty.to_le_bytes());
            b.extend_from_slice(&1u32.to_le_bytes());
            b.extend_from_slice(&[0x0c, 0]);
            b.extend_from_slice(d);
            b.extend_from_slice(&(data.len() as u32).to_le_bytes());
            b.extend_from_slice(data);
        }
        b.extend_from_slice(&[0xff; 64]);
        b
    }

    #[test]
    fn replays_rtmrs_and_rejects_malformed_logs() {
        let b = log(&[
            (1, 0x8000_000B, [1; 48], b"x"),
            (3, 0x0D, [2; 48], b""),
            (3, 0x0D, [3; 48], b""),
        ]);
        let l = EventLog::parse(&b).unwrap();
        assert_eq!(l.events.len(), 3);
        assert_eq!(l.events[0].type_name, "EV_EFI_HANDOFF_TABLES2");
        let r = l.replay();
        let ext = |old: &[u8; 48], d: &[u8; 48]| {
            let mut c = digest::Context::new(&digest::SHA384);
            c.update(old);
            c.update(d);
            <[u8; 48]>::try_from(c.finish().as_ref()).unwrap()
        };
        assert_eq!(r[0], ext(&[0; 48], &[1; 48]));
        assert_eq!(r[2], ext(&ext(&[0; 48], &[2; 48]), &[3; 48]));
        assert_eq!((r[1], r[3]), ([0; 48], [0; 48]));

        assert!(EventLog::parse(&b[..30])
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        let mut bad = b.clone();
        bad[4] = 9;
        assert!(EventLog::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("Spec ID"));
        // An event cut short inside its digest.
        let cut = b.len() - 64 - 10;
        assert!(EventLog::parse(&b[..cut]).is_err());
    }
}
