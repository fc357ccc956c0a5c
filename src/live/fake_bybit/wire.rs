//! The fake Bybit's side of the wire: reading requests on its own terms (query strings, JSON
//! bodies) and writing Bybit's answers and stream messages. Deliberately independent of the
//! client's builders and parsers in `live::bybit`, so a test of one against the other checks
//! two readings of the protocol, not one reading twice.

use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::engine::Side;

/// One HTTP request as the fake received it. Header names are lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    /// The raw query after `?` (may be empty).
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpRequest {
    /// A header's value, names compared without case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The query's `key`, percent-decoded (first occurrence).
    pub fn param(&self, key: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k) == key).then(|| decode(v))
        })
    }
}

/// One HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    /// Bybit's envelope with HTTP 200 (business errors are HTTP 200 too).
    pub fn envelope(code: i64, msg: &str, result: Value, time_ms: i64) -> HttpReply {
        HttpReply {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: json!({
                "retCode": code,
                "retMsg": msg,
                "result": result,
                "retExtInfo": {},
                "time": time_ms,
            })
            .to_string(),
        }
    }

    pub fn ok(result: Value, time_ms: i64) -> HttpReply {
        HttpReply::envelope(0, "OK", result, time_ms)
    }

    pub fn error(code: i64, msg: &str, time_ms: i64) -> HttpReply {
        HttpReply::envelope(code, msg, json!({}), time_ms)
    }

    /// A plain-text answer with another HTTP status (403, 503…), as a gateway sends it.
    pub fn status(status: u16, text: &str) -> HttpReply {
        HttpReply {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: text.to_string(),
        }
    }

    pub fn with_header(mut self, name: &str, value: impl ToString) -> HttpReply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// Percent-decoding of a query component (`+` is a space, as in forms).
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A decimal as Bybit writes it: text, no exponent.
pub fn text(d: Decimal) -> String {
    d.normalize().to_string()
}

pub fn side_text(side: Side) -> &'static str {
    match side {
        Side::Long => "Buy",
        Side::Short => "Sell",
    }
}

/// The side of the order that closes a `side` position.
pub fn closing_side(side: Side) -> &'static str {
    match side {
        Side::Long => "Sell",
        Side::Short => "Buy",
    }
}

/// A position as `position/list` and the `position` topic show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionView {
    pub symbol: String,
    pub position_idx: u8,
    /// `None`: flat.
    pub side: Option<Side>,
    pub size: Decimal,
    pub avg_price: Decimal,
    pub mark_price: Option<Decimal>,
    pub stop_loss: Option<Decimal>,
    pub sl_trigger_by: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub seq: u64,
}

pub fn position_json(p: &PositionView) -> Value {
    json!({
        "positionIdx": p.position_idx,
        "symbol": p.symbol,
        "side": p.side.map_or("", side_text),
        "size": text(p.size),
        "avgPrice": text(p.avg_price),
        "markPrice": p.mark_price.map_or(String::new(), text),
        "takeProfit": "0.00",
        "stopLoss": p.stop_loss.map_or("0.00".to_string(), text),
        "trailingStop": "0.00",
        "slTriggerBy": p.sl_trigger_by,
        "tpslMode": "Full",
        "positionStatus": "Normal",
        "leverage": "10",
        "createdTime": p.created_ms.to_string(),
        "updatedTime": p.updated_ms.to_string(),
        "seq": p.seq,
        "isReduceOnly": false,
    })
}

/// One order as the `order` topic shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    pub symbol: String,
    pub order_id: String,
    pub order_link_id: String,
    /// The order's side (a long's stop sells).
    pub side: &'static str,
    pub status: &'static str,
    /// `StopLoss` for the position's stop; empty for a plain order.
    pub stop_order_type: &'static str,
    pub trigger_price: Option<Decimal>,
    pub trigger_by: String,
    pub qty: Decimal,
    pub avg_price: Option<Decimal>,
    pub cum_exec_qty: Decimal,
    pub position_idx: u8,
    pub reduce_only: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
}

pub fn order_json(o: &OrderView) -> Value {
    json!({
        "category": "linear",
        "symbol": o.symbol,
        "orderId": o.order_id,
        "orderLinkId": o.order_link_id,
        "side": o.side,
        "orderType": "Market",
        "price": "",
        "qty": text(o.qty),
        "timeInForce": if o.stop_order_type.is_empty() { "IOC" } else { "GTC" },
        "orderStatus": o.status,
        "cancelType": "UNKNOWN",
        "rejectReason": "EC_NoError",
        "avgPrice": o.avg_price.map_or(String::new(), text),
        "leavesQty": text(o.qty - o.cum_exec_qty),
        "cumExecQty": text(o.cum_exec_qty),
        "positionIdx": o.position_idx,
        "reduceOnly": o.reduce_only,
        "closeOnTrigger": !o.stop_order_type.is_empty(),
        "stopOrderType": if o.stop_order_type.is_empty() { "UNKNOWN" } else { o.stop_order_type },
        "triggerPrice": o.trigger_price.map_or(String::new(), text),
        "triggerBy": o.trigger_by,
        "tpslMode": if o.stop_order_type.is_empty() { "" } else { "Full" },
        "createdTime": o.created_ms.to_string(),
        "updatedTime": o.updated_ms.to_string(),
    })
}

/// One fill as the `execution` topic shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionView {
    pub symbol: String,
    pub exec_id: String,
    pub order_id: String,
    pub order_link_id: String,
    pub side: &'static str,
    pub price: Decimal,
    pub qty: Decimal,
    pub closed_size: Decimal,
    pub stop_order_type: &'static str,
    pub mark_price: Decimal,
    pub time_ms: i64,
    pub seq: u64,
}

pub fn execution_json(e: &ExecutionView) -> Value {
    json!({
        "category": "linear",
        "symbol": e.symbol,
        "execId": e.exec_id,
        "orderId": e.order_id,
        "orderLinkId": e.order_link_id,
        "side": e.side,
        "orderType": "Market",
        "execType": "Trade",
        "execPrice": text(e.price),
        "execQty": text(e.qty),
        "execValue": text(e.price * e.qty),
        "closedSize": text(e.closed_size),
        "leavesQty": "0",
        "stopOrderType": if e.stop_order_type.is_empty() { "UNKNOWN" } else { e.stop_order_type },
        "markPrice": text(e.mark_price),
        "execTime": e.time_ms.to_string(),
        "isMaker": false,
        "seq": e.seq,
    })
}

/// A private topic message: `{"id","topic","creationTime","data":[…]}`.
pub fn private_message(id: u64, topic: &str, creation_ms: i64, data: Vec<Value>) -> String {
    json!({
        "id": format!("fake-{id}"),
        "topic": topic,
        "creationTime": creation_ms,
        "data": data,
    })
    .to_string()
}

/// A `tickers.<symbol>` message: the snapshot carries every field, a delta the changed ones.
pub fn ticker_message(symbol: &str, snapshot: bool, price: Decimal, cs: u64, ts: i64) -> String {
    let p = text(price);
    let data = if snapshot {
        json!({
            "symbol": symbol,
            "lastPrice": p,
            "markPrice": p,
            "indexPrice": p,
            "fundingRate": "0.0001",
        })
    } else {
        json!({ "symbol": symbol, "lastPrice": p, "markPrice": p })
    };
    json!({
        "topic": format!("tickers.{symbol}"),
        "type": if snapshot { "snapshot" } else { "delta" },
        "data": data,
        "cs": cs,
        "ts": ts,
    })
    .to_string()
}

/// The answer to a stream `op` (`subscribe`, `auth`, `ping`), in the public stream's shape
/// (`ret_msg`, `conn_id`) or the private one's (`retCode`, `retMsg`, `connId`).
pub fn op_reply(
    op: &str,
    private: bool,
    success: bool,
    code: i64,
    msg: &str,
    conn: &str,
) -> String {
    if private {
        json!({"op": op, "success": success, "retCode": code, "retMsg": msg, "connId": conn})
    } else {
        json!({"op": op, "success": success, "ret_msg": msg, "conn_id": conn, "req_id": ""})
    }
    .to_string()
}

/// The pong: public streams answer `op: ping` with `ret_msg: pong`, private ones `op: pong`.
pub fn pong(private: bool, now_ms: i64, conn: &str) -> String {
    if private {
        json!({"req_id": "", "op": "pong", "args": [now_ms.to_string()], "conn_id": conn})
    } else {
        json!({"success": true, "ret_msg": "pong", "conn_id": conn, "req_id": "", "op": "ping"})
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn query_params_are_decoded() {
        let r = HttpRequest {
            method: "GET".into(),
            path: "/v5/position/list".into(),
            query: "category=linear&symbol=BTCUSDT&cursor=a%253D1%2Cb&x".into(),
            headers: vec![("X-Bapi-Sign".into(), "abc".into())],
            body: String::new(),
        };
        assert_eq!(r.param("symbol").as_deref(), Some("BTCUSDT"));
        assert_eq!(r.param("cursor").as_deref(), Some("a%3D1,b"));
        assert_eq!(r.param("x").as_deref(), Some(""));
        assert_eq!(r.param("settleCoin"), None);
        assert_eq!(r.header("x-bapi-sign"), Some("abc"));
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz+1"), "%zz 1");
    }

    #[test]
    fn messages_carry_decimals_as_text() {
        let t: Value =
            serde_json::from_str(&ticker_message("BTCUSDT", false, dec!(17205.50), 3, 9)).unwrap();
        assert_eq!(t["topic"], "tickers.BTCUSDT");
        assert_eq!(t["type"], "delta");
        assert_eq!(t["data"]["markPrice"], "17205.5");
        assert_eq!(t["ts"], 9);
        let r: Value =
            serde_json::from_str(&HttpReply::error(10004, "error sign!", 5).body).unwrap();
        assert_eq!(r["retCode"], 10004);
        assert_eq!(r["result"], json!({}));
    }
}
