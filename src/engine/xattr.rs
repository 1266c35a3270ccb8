//! Extended attributes. `user.rustdb.*` shows and sets lifecycle state; other `user.*`
//! attributes are stored as given; other namespaces are not supported.

use super::{Engine, EngineError, Result};
use crate::catalog::NodeType;
use crate::decay;

const PREFIX: &str = "user.rustdb.";
const READABLE: [&str; 12] = [
    "id",
    "stage",
    "heat",
    "kind",
    "format",
    "original_size",
    "next_decay_at",
    "restore_until",
    "pinned",
    "hold",
    "keep_original",
    "speed",
];
const MAX_VALUE: usize = 64 * 1024;

fn flag(value: &[u8]) -> Result<bool> {
    match value.trim_ascii() {
        b"1" | b"true" => Ok(true),
        b"0" | b"false" => Ok(false),
        _ => Err(EngineError::Invalid("expected \"1\" or \"0\"".into())),
    }
}

impl Engine {
    pub fn getxattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>> {
        let name_str = std::str::from_utf8(name).map_err(|_| EngineError::NoAttr)?;
        if let Some(key) = name_str.strip_prefix(PREFIX) {
            self.flush_heat()?;
            let o = self.live_object(ino)?.ok_or(EngineError::NoAttr)?;
            let now = self.clock.now();
            let heat = decay::heat_at(
                o.heat,
                o.heat_at,
                now,
                self.policy(&o.tenant, &o.kind).heat_half_life_sec,
            );
            let value = match key {
                "id" => o.id.to_string(),
                "stage" => o.stage.to_string(),
                "heat" => format!("{heat:.3}"),
                "kind" => o.kind,
                "format" => o.format,
                "original_size" => o.original_size.to_string(),
                "next_decay_at" => o.next_decay_at.ok_or(EngineError::NoAttr)?.to_string(),
                "restore_until" => o
                    .restore_until
                    .filter(|_| o.original_gen.is_some())
                    .ok_or(EngineError::NoAttr)?
                    .to_string(),
                "pinned" => u8::from(o.pinned).to_string(),
                "hold" => u8::from(o.hold).to_string(),
                "keep_original" => u8::from(
                    o.keep_original
                        .unwrap_or(self.policy(&o.tenant, &o.kind).keep_original),
                )
                .to_string(),
                "speed" => format!("{}", o.speed),
                _ => return Err(EngineError::NoAttr),
            };
            return Ok(value.into_bytes());
        }
        if !name_str.starts_with("user.") {
            return Err(EngineError::NoAttr);
        }
        self.catalog
            .lock()
            .read()
            .xattr(ino, name)?
            .ok_or(EngineError::NoAttr)
    }

    /// `create`: fail if it exists; `replace`: fail if it does not.
    pub fn setxattr(
        &self,
        ino: u64,
        name: &[u8],
        value: &[u8],
        create: bool,
        replace: bool,
    ) -> Result<()> {
        let name_str = std::str::from_utf8(name).map_err(|_| EngineError::Unsupported)?;
        if let Some(key) = name_str.strip_prefix(PREFIX) {
            let node = self
                .catalog
                .lock()
                .read()
                .node(ino)?
                .ok_or(EngineError::NoEntry)?;
            if node.node_type != NodeType::File {
                return Err(EngineError::Unsupported);
            }
            if create {
                return Err(EngineError::Exists);
            }
            let (mut pinned, mut hold, mut speed, mut keep) = (None, None, None, None);
            match key {
                "pinned" => pinned = Some(flag(value)?),
                "hold" => hold = Some(flag(value)?),
                "keep_original" => keep = Some(flag(value)?),
                "speed" => {
                    let s: f64 = std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                        .ok_or_else(|| {
                            EngineError::Invalid("speed must be a decimal number".into())
                        })?;
                    speed = Some(s);
                }
                k if READABLE.contains(&k) => {
                    return Err(EngineError::NotPermitted(format!(
                        "{name_str} is read-only"
                    )))
                }
                _ => return Err(EngineError::Unsupported),
            }
            self.control(ino, pinned, hold, speed, keep)?;
            return Ok(());
        }
        if !name_str.starts_with("user.") {
            return Err(EngineError::Unsupported);
        }
        if value.len() > MAX_VALUE {
            return Err(EngineError::Invalid("attribute value too large".into()));
        }
        let cat = self.catalog.lock();
        let r = cat.read();
        r.node(ino)?.ok_or(EngineError::NoEntry)?;
        let exists = r.xattr(ino, name)?.is_some();
        if create && exists {
            return Err(EngineError::Exists);
        }
        if replace && !exists {
            return Err(EngineError::NoAttr);
        }
        r.set_xattr(ino, name, value)?;
        Ok(())
    }

    pub fn listxattr(&self, ino: u64) -> Result<Vec<Vec<u8>>> {
        let cat = self.catalog.lock();
        let r = cat.read();
        let node = r.node(ino)?.ok_or(EngineError::NoEntry)?;
        let mut names = Vec::new();
        if node.node_type == NodeType::File {
            if let Some(o) = r.object(ino)? {
                for key in READABLE {
                    let present = match key {
                        "next_decay_at" => o.next_decay_at.is_some(),
                        "restore_until" => o.restore_until.is_some() && o.original_gen.is_some(),
                        _ => true,
                    };
                    if present {
                        names.push(format!("{PREFIX}{key}").into_bytes());
                    }
                }
            }
        }
        names.extend(r.xattr_names(ino)?);
        Ok(names)
    }

    pub fn removexattr(&self, ino: u64, name: &[u8]) -> Result<()> {
        if name.starts_with(PREFIX.as_bytes()) {
            return Err(EngineError::NotPermitted(
                "rustdb attributes cannot be removed; set them instead".into(),
            ));
        }
        if self.catalog.lock().read().remove_xattr(ino, name)? {
            Ok(())
        } else {
            Err(EngineError::NoAttr)
        }
    }
}
