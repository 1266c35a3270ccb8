//! A flat, depth-limited view of an XML document for text extraction.

use quick_xml::events::Event;
use quick_xml::Reader;

use super::util::Ticker;
use super::{Limits, TransformError};

pub(crate) enum XmlEvent<'a> {
    /// Element start with its local name and (local-name, value) attributes.
    Start(&'a str, &'a [(String, String)]),
    End(&'a str),
    Text(&'a str),
}

fn local(name: &[u8]) -> String {
    let n = match name.iter().rposition(|&b| b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    };
    String::from_utf8_lossy(n).into_owned()
}

fn predefined_entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => return None,
    })
}

/// Walks `data`, calling `f` for each event, until `f` returns false or the document ends.
/// Nesting deeper than `limits.max_xml_depth` or running past the deadline is a `Limit` error.
pub(crate) fn walk(
    data: &[u8],
    limits: &Limits,
    mut f: impl FnMut(XmlEvent<'_>) -> bool,
) -> Result<(), TransformError> {
    let max_depth = limits.max_xml_depth;
    let mut ticker = Ticker::new(limits);
    let mut reader = Reader::from_reader(data);
    reader.config_mut().check_end_names = false;
    let mut buf = Vec::new();
    let mut depth = 0usize;
    let bad = |e: &dyn std::fmt::Display| TransformError::decode("application/xml", e);
    loop {
        ticker.tick()?;
        buf.clear();
        let ev = reader.read_event_into(&mut buf).map_err(|e| bad(&e))?;
        let go = match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                let name = local(e.name().as_ref());
                let attrs: Vec<(String, String)> = e
                    .attributes()
                    .flatten()
                    .map(|a| {
                        (
                            local(a.key.as_ref()),
                            String::from_utf8_lossy(&a.value).into_owned(),
                        )
                    })
                    .collect();
                if !empty {
                    depth += 1;
                    if depth > max_depth {
                        return Err(TransformError::Limit(format!(
                            "xml nesting deeper than {max_depth}"
                        )));
                    }
                }
                let mut go = f(XmlEvent::Start(&name, &attrs));
                if empty && go {
                    go = f(XmlEvent::End(&name));
                }
                go
            }
            Event::End(ref e) => {
                depth = depth.saturating_sub(1);
                f(XmlEvent::End(&local(e.name().as_ref())))
            }
            Event::Text(ref t) => {
                let s = t.decode().map_err(|e| bad(&e))?;
                f(XmlEvent::Text(&s))
            }
            Event::CData(ref t) => f(XmlEvent::Text(&String::from_utf8_lossy(t))),
            Event::GeneralRef(ref r) => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(c),
                    _ => predefined_entity(&String::from_utf8_lossy(r)),
                };
                match c {
                    Some(c) => f(XmlEvent::Text(c.encode_utf8(&mut [0u8; 4]))),
                    None => true,
                }
            }
            Event::Eof => return Ok(()),
            _ => true,
        };
        if !go {
            return Ok(());
        }
    }
}
