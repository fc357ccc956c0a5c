//! The live requests a market stream connection takes (Binance's "Live Subscribing"):
//! `{"method":"SUBSCRIBE","params":["ethusdt@markPrice@1s"],"id":1}` adds streams to what the
//! connection carries, `UNSUBSCRIBE` removes them, `LIST_SUBSCRIPTIONS` names them. Each is
//! answered `{"result":null,"id":1}` (the list for `LIST_SUBSCRIPTIONS`), a malformed one
//! `{"error":{"code":2,"msg":"…"},"id":1}`. Sans I/O: the server applies the answer.

use serde_json::{Value, json};

/// What a request did to a connection's streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The reply frame.
    pub reply: String,
    /// Streams newly carried (their current prices go out at once, as a stream's first).
    pub added: Vec<String>,
}

/// Applies one text frame received on a market connection carrying `names`.
pub fn on_request(names: &mut Vec<String>, text: &str) -> Answer {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let id = v.get("id").cloned().unwrap_or(Value::Null);
    let refuse = |msg: &str| Answer {
        reply: json!({"error": {"code": 2, "msg": msg}, "id": id}).to_string(),
        added: Vec::new(),
    };
    let params: Option<Vec<String>> = v.get("params").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(|p| p.as_str().map(str::to_string))
            .collect()
    });
    let done = |added| Answer {
        reply: json!({"result": null, "id": id}).to_string(),
        added,
    };
    match v.get("method").and_then(Value::as_str) {
        Some("SUBSCRIBE") => {
            let Some(params) = params.filter(|p| !p.is_empty()) else {
                return refuse("Invalid request: 'params' must name streams");
            };
            let mut added = Vec::new();
            for p in params {
                if !names.contains(&p) {
                    names.push(p.clone());
                    added.push(p);
                }
            }
            done(added)
        }
        Some("UNSUBSCRIBE") => {
            let Some(params) = params else {
                return refuse("Invalid request: 'params' must name streams");
            };
            names.retain(|n| !params.contains(n));
            done(Vec::new())
        }
        Some("LIST_SUBSCRIPTIONS") => Answer {
            reply: json!({"result": names, "id": id}).to_string(),
            added: Vec::new(),
        },
        // Anything else (a client's own pings in text, say): the plain reply, as before.
        Some(other) => refuse(&format!("Invalid request: unknown method {other}")),
        None => done(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn subscribe_adds_new_streams_once_and_unsubscribe_removes() {
        let mut names = vec!["btcusdt@markPrice@1s".to_string()];
        let a = on_request(
            &mut names,
            r#"{"method":"SUBSCRIBE","params":["ethusdt@markPrice@1s","btcusdt@markPrice@1s"],"id":3}"#,
        );
        assert_eq!(v(&a.reply), json!({"result": null, "id": 3}));
        assert_eq!(a.added, ["ethusdt@markPrice@1s"]);
        assert_eq!(names, ["btcusdt@markPrice@1s", "ethusdt@markPrice@1s"]);
        let again = on_request(
            &mut names,
            r#"{"method":"SUBSCRIBE","params":["ethusdt@markPrice@1s"],"id":4}"#,
        );
        assert!(again.added.is_empty());
        let list = on_request(&mut names, r#"{"method":"LIST_SUBSCRIPTIONS","id":5}"#);
        assert_eq!(
            v(&list.reply),
            json!({"result": ["btcusdt@markPrice@1s", "ethusdt@markPrice@1s"], "id": 5})
        );
        on_request(
            &mut names,
            r#"{"method":"UNSUBSCRIBE","params":["btcusdt@markPrice@1s"],"id":6}"#,
        );
        assert_eq!(names, ["ethusdt@markPrice@1s"]);
    }

    #[test]
    fn a_malformed_request_is_refused_and_changes_nothing() {
        let mut names = vec!["btcusdt@aggTrade".to_string()];
        let a = on_request(&mut names, r#"{"method":"SUBSCRIBE","id":9}"#);
        assert_eq!(v(&a.reply)["error"]["code"], 2, "{}", a.reply);
        assert_eq!(v(&a.reply)["id"], 9, "{}", a.reply);
        let b = on_request(
            &mut names,
            r#"{"method":"SUBSCRIBE!","params":["x"],"id":10}"#,
        );
        assert!(b.reply.contains("unknown method"), "{}", b.reply);
        assert_eq!(names, ["btcusdt@aggTrade"]);
    }
}
