//! Bybit v5 request signing (`EXCHANGES.md` §2.2): HMAC-SHA256 over
//! `timestamp + api_key + recv_window + payload`, lowercase hex, where the payload is the
//! query string of a GET or the JSON body of a POST — the exact bytes sent.
//!
//! The docs' example signature (`410e0f38…2f30b`) cannot be recomputed: the docs publish no
//! secret for it. So the string to sign is tested against the docs' plaintexts, and the HMAC
//! against RFC 4231's published vectors; together they pin the signature.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::request::Request;
use crate::live::credentials::{Credentials, Secret};

pub const HEADER_API_KEY: &str = "X-BAPI-API-KEY";
pub const HEADER_TIMESTAMP: &str = "X-BAPI-TIMESTAMP";
pub const HEADER_SIGN: &str = "X-BAPI-SIGN";
pub const HEADER_RECV_WINDOW: &str = "X-BAPI-RECV-WINDOW";

/// `timestamp + api_key + recv_window + payload`, the text the signature covers.
pub fn string_to_sign(
    timestamp_ms: i64,
    api_key: &str,
    recv_window_ms: u64,
    payload: &str,
) -> String {
    format!("{timestamp_ms}{api_key}{recv_window_ms}{payload}")
}

/// HMAC-SHA256 of `message` under `key`, lowercase hex.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    // HMAC takes a key of any length (longer ones are hashed first), so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// The four headers of a signed request. `Debug` hides the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    api_key: Secret,
    pub timestamp_ms: i64,
    pub recv_window_ms: u64,
    pub sign: String,
}

impl SignedHeaders {
    /// Name and value of each header, for the HTTP client (the key's value is exposed here
    /// and only here).
    pub fn pairs(&self) -> [(&'static str, String); 4] {
        [
            (HEADER_API_KEY, self.api_key.expose().to_string()),
            (HEADER_TIMESTAMP, self.timestamp_ms.to_string()),
            (HEADER_SIGN, self.sign.clone()),
            (HEADER_RECV_WINDOW, self.recv_window_ms.to_string()),
        ]
    }
}

impl fmt::Debug for SignedHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedHeaders")
            .field("api_key", &self.api_key)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("recv_window_ms", &self.recv_window_ms)
            .field("sign", &self.sign)
            .finish()
    }
}

/// Signs `request` at `timestamp_ms` (the local clock plus the server offset).
pub fn sign(
    credentials: &Credentials,
    request: &Request,
    timestamp_ms: i64,
    recv_window_ms: u64,
) -> SignedHeaders {
    let plain = string_to_sign(
        timestamp_ms,
        credentials.api_key.expose(),
        recv_window_ms,
        request.sign_payload(),
    );
    SignedHeaders {
        api_key: credentials.api_key.clone(),
        timestamp_ms,
        recv_window_ms,
        sign: hmac_sha256_hex(credentials.api_secret.expose().as_bytes(), plain.as_bytes()),
    }
}

/// The private stream's auth message (`EXCHANGES.md` §2.6):
/// `{"op":"auth","args":[api_key, expires, hex(HMAC(secret, "GET/realtime" + expires))]}`.
/// It holds the key, so it comes back as a [`Secret`].
pub fn ws_auth(credentials: &Credentials, expires_ms: i64) -> Secret {
    let sig = hmac_sha256_hex(
        credentials.api_secret.expose().as_bytes(),
        format!("GET/realtime{expires_ms}").as_bytes(),
    );
    // The docs' order (`op` first): a `json!` map would sort the keys.
    let args = serde_json::json!([credentials.api_key.expose(), expires_ms, sig]);
    Secret::new(format!(r#"{{"op":"auth","args":{args}}}"#))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::bybit::request::{Method, PositionFilter, position_list};

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn the_docs_strings_to_sign() {
        // GET, from the v5 guide ("Example for generating plain text to encrypt").
        assert_eq!(
            string_to_sign(
                1658384314791,
                "XXXXXXXXXX",
                5000,
                "category=option&symbol=BTC-29JUL22-25000-C"
            ),
            "1658384314791XXXXXXXXXX5000category=option&symbol=BTC-29JUL22-25000-C"
        );
        // POST, same page: the raw body follows the recv window.
        assert_eq!(
            string_to_sign(
                1658385579423,
                "XXXXXXXXXX",
                5000,
                r#"{"category": "option"}"#
            ),
            r#"1658385579423XXXXXXXXXX5000{"category": "option"}"#
        );
    }

    /// RFC 4231 §4.2–4.8, HMAC-SHA-256 (case 5's truncated output is checked as a prefix).
    #[test]
    fn rfc_4231_vectors() {
        let cases: [(Vec<u8>, Vec<u8>, &str); 6] = [
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                vec![0xaa; 20],
                vec![0xdd; 50],
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            ),
            (
                unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
                vec![0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                vec![0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                vec![0xaa; 131],
                b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".to_vec(),
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (key, data, want) in cases {
            assert_eq!(hmac_sha256_hex(&key, &data), want);
        }
        assert!(
            hmac_sha256_hex(&[0x0c; 20], b"Test With Truncation")
                .starts_with("a3b6167473100ee06e0c796c2955552b")
        );
    }

    fn creds() -> Credentials {
        Credentials {
            api_key: Secret::new("XXXXXXXXXX"),
            api_secret: Secret::new("YYYYYYYYYY-test-secret"),
        }
    }

    #[test]
    fn a_request_is_signed_over_its_exact_payload() {
        let c = creds();
        let get = position_list(PositionFilter::Symbol("BTCUSDT"), None).unwrap();
        assert_eq!(get.method, Method::Get);
        let h = sign(&c, &get, 1658384314791, 5000);
        let plain = "1658384314791XXXXXXXXXX5000category=linear&symbol=BTCUSDT";
        assert_eq!(
            h.sign,
            hmac_sha256_hex(b"YYYYYYYYYY-test-secret", plain.as_bytes())
        );
        // Computed independently (Python's hmac module) for this key and plaintext.
        assert_eq!(
            h.sign,
            "8748571d117bfb67816ef614fad5e7e67affa1d40b12b67cb69cfc5e222aeb75"
        );
        let pairs = h.pairs();
        assert_eq!(pairs[0], ("X-BAPI-API-KEY", "XXXXXXXXXX".to_string()));
        assert_eq!(pairs[1], ("X-BAPI-TIMESTAMP", "1658384314791".to_string()));
        assert_eq!(pairs[2].0, "X-BAPI-SIGN");
        assert_eq!(pairs[3], ("X-BAPI-RECV-WINDOW", "5000".to_string()));
        // One byte more in the payload, another signature.
        let mut other = get.clone();
        other.query.push('x');
        assert_ne!(sign(&c, &other, 1658384314791, 5000).sign, h.sign);
        let shown = format!("{h:?}");
        assert!(!shown.contains("XXXXXXXXXX"), "{shown}");
    }

    #[test]
    fn the_stream_auth_message() {
        let c = creds();
        let m = ws_auth(&c, 1662350400000);
        let v: serde_json::Value = serde_json::from_str(m.expose()).unwrap();
        assert_eq!(v["op"], "auth");
        assert_eq!(v["args"][0], "XXXXXXXXXX");
        assert_eq!(v["args"][1], 1662350400000i64);
        assert_eq!(
            v["args"][2],
            hmac_sha256_hex(b"YYYYYYYYYY-test-secret", b"GET/realtime1662350400000")
        );
        assert!(!format!("{m:?}").contains("XXXXXXXXXX"));
    }
}
