//! Decoding the Kubernetes protobuf envelope for the few built-ins kubectl's typed
//! clients send that way (`kubectl create namespace|secret|configmap`). Responses are
//! always JSON, which every client accepts (pure).

use base64::Engine as _;
use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\0";

#[derive(Debug, Clone)]
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err("varint too long".into())
}

fn fields(buf: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (field, wire) = (key >> 3, key & 7);
        let v = match wire {
            0 => Wire::Varint(varint(buf, &mut pos)?),
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).map_err(|_| "length overflow")?;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or("truncated field")?;
                let b = &buf[pos..end];
                pos = end;
                Wire::Bytes(b)
            }
            1 => {
                pos += 8;
                continue;
            }
            5 => {
                pos += 4;
                continue;
            }
            other => return Err(format!("unsupported protobuf wire type {other}")),
        };
        out.push((field, v));
    }
    Ok(out)
}

fn string(w: &Wire<'_>) -> Result<String, String> {
    match w {
        Wire::Bytes(b) => {
            String::from_utf8(b.to_vec()).map_err(|_| "invalid UTF-8 in string".into())
        }
        Wire::Varint(_) => Err("expected a string".into()),
    }
}

fn bytes<'a>(w: &Wire<'a>) -> Result<&'a [u8], String> {
    match w {
        Wire::Bytes(b) => Ok(b),
        Wire::Varint(_) => Err("expected bytes".into()),
    }
}

fn boolean(w: &Wire<'_>) -> bool {
    matches!(w, Wire::Varint(v) if *v != 0)
}

/// A map entry (`1: key, 2: value`); `as_base64` for `map<string, bytes>` (JSON carries base64).
fn map_entry(w: &Wire<'_>, as_base64: bool) -> Result<(String, Value), String> {
    let (mut k, mut v) = (String::new(), json!(""));
    for (f, x) in fields(bytes(w)?)? {
        match f {
            1 => k = string(&x)?,
            2 if as_base64 => {
                v = json!(base64::engine::general_purpose::STANDARD.encode(bytes(&x)?))
            }
            2 => v = json!(string(&x)?),
            _ => {}
        }
    }
    Ok((k, v))
}

fn insert_entry(
    obj: &mut Map<String, Value>,
    key: &str,
    w: &Wire<'_>,
    as_base64: bool,
) -> Result<(), String> {
    let (k, v) = map_entry(w, as_base64)?;
    obj.entry(key).or_insert_with(|| json!({}))[k] = v;
    Ok(())
}

fn owner_reference(buf: &[u8]) -> Result<Value, String> {
    let mut o = Map::new();
    for (f, w) in fields(buf)? {
        let name = match f {
            1 => "kind",
            3 => "name",
            4 => "uid",
            5 => "apiVersion",
            6 => {
                o.insert("controller".into(), json!(boolean(&w)));
                continue;
            }
            7 => {
                o.insert("blockOwnerDeletion".into(), json!(boolean(&w)));
                continue;
            }
            _ => continue,
        };
        o.insert(name.into(), json!(string(&w)?));
    }
    Ok(Value::Object(o))
}

fn object_meta(buf: &[u8]) -> Result<Value, String> {
    let mut m = Map::new();
    for (f, w) in fields(buf)? {
        match f {
            // Go's encoder writes empty optional strings; empty means unset.
            1 | 2 | 3 | 6 if string(&w)?.is_empty() => None,
            1 => m.insert("name".into(), json!(string(&w)?)),
            2 => m.insert("generateName".into(), json!(string(&w)?)),
            3 => m.insert("namespace".into(), json!(string(&w)?)),
            6 => m.insert("resourceVersion".into(), json!(string(&w)?)),
            11 => {
                insert_entry(&mut m, "labels", &w, false)?;
                None
            }
            12 => {
                insert_entry(&mut m, "annotations", &w, false)?;
                None
            }
            13 => {
                let r = owner_reference(bytes(&w)?)?;
                if let Some(a) = m
                    .entry("ownerReferences")
                    .or_insert_with(|| json!([]))
                    .as_array_mut()
                {
                    a.push(r);
                }
                None
            }
            14 => {
                let s = string(&w)?;
                if let Some(a) = m
                    .entry("finalizers")
                    .or_insert_with(|| json!([]))
                    .as_array_mut()
                {
                    a.push(json!(s));
                }
                None
            }
            // Server-set fields (uid, timestamps, managedFields) are ignored on writes anyway.
            _ => None,
        };
    }
    Ok(Value::Object(m))
}

fn secret(buf: &[u8]) -> Result<Map<String, Value>, String> {
    let mut o = Map::new();
    for (f, w) in fields(buf)? {
        match f {
            1 => {
                o.insert("metadata".into(), object_meta(bytes(&w)?)?);
            }
            2 => insert_entry(&mut o, "data", &w, true)?,
            3 if !string(&w)?.is_empty() => {
                o.insert("type".into(), json!(string(&w)?));
            }
            4 => insert_entry(&mut o, "stringData", &w, false)?,
            5 => {
                o.insert("immutable".into(), json!(boolean(&w)));
            }
            _ => {}
        }
    }
    Ok(o)
}

fn config_map(buf: &[u8]) -> Result<Map<String, Value>, String> {
    let mut o = Map::new();
    for (f, w) in fields(buf)? {
        match f {
            1 => {
                o.insert("metadata".into(), object_meta(bytes(&w)?)?);
            }
            2 => insert_entry(&mut o, "data", &w, false)?,
            3 => insert_entry(&mut o, "binaryData", &w, true)?,
            4 => {
                o.insert("immutable".into(), json!(boolean(&w)));
            }
            _ => {}
        }
    }
    Ok(o)
}

fn namespace(buf: &[u8]) -> Result<Map<String, Value>, String> {
    let mut o = Map::new();
    for (f, w) in fields(buf)? {
        if f == 1 {
            o.insert("metadata".into(), object_meta(bytes(&w)?)?);
        }
    }
    Ok(o)
}

/// Decodes a protobuf request body into the JSON object it stands for.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("missing the k8s protobuf envelope")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), None);
    for (f, w) in fields(rest)? {
        match f {
            1 => {
                for (tf, tw) in fields(bytes(&w)?)? {
                    match tf {
                        1 => api_version = string(&tw)?,
                        2 => kind = string(&tw)?,
                        _ => {}
                    }
                }
            }
            2 => raw = Some(bytes(&w)?),
            _ => {}
        }
    }
    let raw = raw.ok_or("the protobuf envelope has no object")?;
    let mut obj = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Secret") => secret(raw)?,
        ("v1", "ConfigMap") => config_map(raw)?,
        ("v1", "Namespace") => namespace(raw)?,
        _ => {
            return Err(format!(
                "protobuf bodies of {api_version} {kind} are not supported by this sandbox; send JSON"
            ));
        }
    };
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(field: u64, wire: u64) -> Vec<u8> {
        vec![u8::try_from(field << 3 | wire).unwrap()]
    }

    fn lenp(field: u64, data: &[u8]) -> Vec<u8> {
        let mut v = tag(field, 2);
        v.push(u8::try_from(data.len()).unwrap());
        v.extend_from_slice(data);
        v
    }

    fn entry(field: u64, k: &str, v: &[u8]) -> Vec<u8> {
        let inner = [lenp(1, k.as_bytes()), lenp(2, v)].concat();
        lenp(field, &inner)
    }

    #[test]
    fn decodes_a_secret_envelope() {
        let meta = [lenp(1, b"creds"), entry(11, "app", b"demo")].concat();
        let secret = [
            lenp(1, &meta),
            entry(2, "key", b"\x00\x01"),
            lenp(3, b"Opaque"),
        ]
        .concat();
        let type_meta = [lenp(1, b"v1"), lenp(2, b"Secret")].concat();
        let body = [MAGIC.to_vec(), lenp(1, &type_meta), lenp(2, &secret)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(v["kind"], "Secret");
        assert_eq!(v["metadata"]["name"], "creds");
        assert_eq!(v["metadata"]["labels"]["app"], "demo");
        assert_eq!(v["data"]["key"], "AAE=");
        assert_eq!(v["type"], "Opaque");
    }

    #[test]
    fn rejects_unknown_kinds_and_garbage() {
        let type_meta = [lenp(1, b"apps/v1"), lenp(2, b"Deployment")].concat();
        let body = [MAGIC.to_vec(), lenp(1, &type_meta), lenp(2, b"")].concat();
        assert!(decode(&body).unwrap_err().contains("not supported"));
        assert!(decode(b"{}").is_err());
        assert!(decode(b"k8s\0\x0a\x7f").is_err());
    }
}
