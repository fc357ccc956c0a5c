//! Binance request signing (`EXCHANGES.md` §1.2): `hex(HMAC_SHA256(secret, query))` over the
//! exact query string sent — the parameters, `recvWindow`, `timestamp` — appended as
//! `&signature=<hex>`, with the key in `X-MBX-APIKEY`. `USER_STREAM` endpoints (listenKey)
//! carry the key header and no signature; public ones neither.

use std::fmt;

use super::request::{HEADER_API_KEY, Request, Security};
use crate::live::bybit::sign::hmac_sha256_hex;
use crate::live::credentials::{Credentials, Secret};

/// A request ready for the wire: the full query (signature included) and the key header.
/// `Debug` hides the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Signed {
    /// Everything after `?` (may be empty).
    pub query: String,
    api_key: Option<Secret>,
    /// The `timestamp` signed, if any (for the `-1021` diagnosis).
    pub timestamp_ms: Option<i64>,
}

impl Signed {
    /// The API-key header, for the HTTP client (the key's value is exposed here and only here).
    pub fn header(&self) -> Option<(&'static str, String)> {
        self.api_key
            .as_ref()
            .map(|k| (HEADER_API_KEY, k.expose().to_string()))
    }

    /// The path with the query, as on the request line.
    pub fn path_and_query(&self, request: &Request) -> String {
        if self.query.is_empty() {
            request.path.to_string()
        } else {
            format!("{}?{}", request.path, self.query)
        }
    }
}

impl fmt::Debug for Signed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signed")
            .field("query", &self.query)
            .field("api_key", &self.api_key)
            .field("timestamp_ms", &self.timestamp_ms)
            .finish()
    }
}

/// The signature of `query` under `secret`.
pub fn signature(secret: &Secret, query: &str) -> String {
    hmac_sha256_hex(secret.expose().as_bytes(), query.as_bytes())
}

/// Prepares `request` at `timestamp_ms` (the local clock plus the server offset).
pub fn sign(
    credentials: &Credentials,
    request: &Request,
    timestamp_ms: i64,
    recv_window_ms: u64,
) -> Signed {
    match request.security {
        Security::Public => Signed {
            query: request.params.clone(),
            api_key: None,
            timestamp_ms: None,
        },
        Security::ApiKey => Signed {
            query: request.params.clone(),
            api_key: Some(credentials.api_key.clone()),
            timestamp_ms: None,
        },
        Security::Signed => {
            let plain = request.to_sign(timestamp_ms, recv_window_ms);
            let sig = signature(&credentials.api_secret, &plain);
            Signed {
                query: format!("{plain}&signature={sig}"),
                api_key: Some(credentials.api_key.clone()),
                timestamp_ms: Some(timestamp_ms),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Instrument, Side};
    use crate::live::binance::request::{
        self as req, PositionSide, StopOptions, StopPrice, Target,
    };
    use rust_decimal_macros::dec;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// The signature computed independently, by `openssl dgst -sha256 -hmac <secret>`.
    fn openssl_hmac(secret: &str, message: &str) -> String {
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-hmac", secret])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("openssl runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(message.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        // "SHA2-256(stdin)= <hex>" (OpenSSL 3) or "(stdin)= <hex>" (1.1).
        let text = String::from_utf8(out.stdout).unwrap();
        text.trim().rsplit(' ').next().unwrap().to_string()
    }

    fn creds() -> Credentials {
        // The key and secret of Binance's own signing example (USD-M "General Info").
        Credentials {
            api_key: Secret::new(
                "dbefbc809e3e83c283a984c3a1459732ea7db1360ca80c5c2c8867408d28cc83",
            ),
            api_secret: Secret::new(
                "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9",
            ),
        }
    }

    #[test]
    fn the_signature_matches_openssl_over_the_exact_query() {
        let c = creds();
        let i = Instrument::new(dec!(0.1));
        let t = Target {
            symbol: "BTCUSDT",
            position_side: PositionSide::Both,
            side: Side::Long,
            size: dec!(0.5),
            instrument: &i,
        };
        let stop = StopPrice::from_units("BTCUSDT", i.units(dec!(61250)).unwrap(), &i).unwrap();
        let r = req::new_stop(&t, stop, StopOptions::default(), "ts-42-7").unwrap();
        let s = sign(&c, &r, 1767000000000, 5000);
        let plain = "algoType=CONDITIONAL&symbol=BTCUSDT&side=SELL&type=STOP_MARKET\
                     &triggerPrice=61250&workingType=MARK_PRICE&closePosition=true\
                     &priceProtect=FALSE&clientAlgoId=ts-42-7&recvWindow=5000\
                     &timestamp=1767000000000";
        let want = openssl_hmac(c.api_secret.expose(), plain);
        assert_eq!(want.len(), 64);
        assert_eq!(s.query, format!("{plain}&signature={want}"));
        assert_eq!(s.timestamp_ms, Some(1767000000000));
        assert_eq!(
            s.header(),
            Some(("X-MBX-APIKEY", c.api_key.expose().to_string()))
        );
        assert_eq!(
            s.path_and_query(&r),
            format!("/fapi/v1/algoOrder?{plain}&signature={want}")
        );
        // One byte more in the query, another signature.
        assert_ne!(signature(&c.api_secret, &format!("{plain}x")), want);
        let shown = format!("{s:?}");
        assert!(!shown.contains(c.api_key.expose()), "{shown}");
    }

    #[test]
    fn binances_published_example_signature() {
        // USD-M "General Info", SIGNED endpoint example 1 (all parameters in the query).
        let c = creds();
        let plain = "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000\
                     &timeInForce=GTC&recvWindow=5000&timestamp=1591702613943";
        let want = "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9";
        assert_eq!(signature(&c.api_secret, plain), want);
        assert_eq!(openssl_hmac(c.api_secret.expose(), plain), want);
    }

    #[test]
    fn user_stream_and_public_requests_are_not_signed() {
        let c = creds();
        let s = sign(&c, &req::listen_key_create(), 5, 5000);
        assert_eq!(s.query, "");
        assert!(s.header().is_some());
        assert_eq!(s.timestamp_ms, None);
        let s = sign(&c, &req::server_time(), 5, 5000);
        assert_eq!(s.query, "");
        assert_eq!(s.header(), None);
        let s = sign(&c, &req::position_mode(), 7, 5000);
        assert!(
            s.query
                .starts_with("recvWindow=5000&timestamp=7&signature="),
            "{}",
            s.query
        );
    }
}
