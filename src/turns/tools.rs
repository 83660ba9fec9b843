//! Host tools (TURNS §24): checking what `thread/start` declares, offering the tools to the model,
//! and running one call — an `item/tool/call` request to the turn's starting connection — into
//! the output the model sees next. Every failure becomes an output; none ends the turn.

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use crate::peer::{ClientRequestError, Peer};
use crate::protocol::{DynamicTool, DynamicToolCallParams, DynamicToolSpec, methods};
use crate::turns::error::ThreadError;
use crate::turns::events::FunctionCall;

/// Most tools one thread may declare.
const MAX_TOOLS: usize = 128;
/// Longest tool name (the Responses API's limit).
const MAX_NAME: usize = 64;

/// Checks `thread/start.dynamicTools` (TURNS §24.1); nothing is created if one is refused.
pub fn check(specs: Vec<DynamicToolSpec>) -> Result<Vec<DynamicTool>, ThreadError> {
    if specs.len() > MAX_TOOLS {
        return Err(ThreadError::InvalidTool(format!(
            "too many dynamic tools (max {MAX_TOOLS})"
        )));
    }
    let mut tools: Vec<DynamicTool> = Vec::with_capacity(specs.len());
    for spec in specs {
        let name = spec.name;
        let refuse = |text: String| Err(ThreadError::InvalidTool(text));
        if spec.kind.as_deref() == Some("namespace") {
            return refuse(format!("namespace dynamic tools are not supported: {name}"));
        }
        if name.trim().is_empty() {
            return refuse("dynamic tool name must not be empty".to_owned());
        }
        if name.trim() != name {
            return refuse(format!(
                "dynamic tool name has leading/trailing whitespace: {name}"
            ));
        }
        let valid = name.len() <= MAX_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return refuse(format!("dynamic tool name is invalid: {name}"));
        }
        if tools.iter().any(|tool| tool.name == name) {
            return refuse(format!("duplicate dynamic tool name: {name}"));
        }
        let Some(input_schema @ Value::Object(_)) = spec.input_schema else {
            return refuse(format!(
                "dynamic tool input schema is not supported for {name}: expected a JSON object"
            ));
        };
        tools.push(DynamicTool {
            name,
            description: spec.description.unwrap_or_default(),
            input_schema,
        });
    }
    Ok(tools)
}

/// Where a call goes and how long it may take.
pub struct CallTarget<'a> {
    pub starter: &'a Peer,
    pub thread_id: &'a str,
    pub turn_id: &'a str,
    pub tools: &'a [DynamicTool],
    pub timeout: Duration,
}

/// Starts one call: a request to the starting connection (sent before this returns, so calls
/// made in model order go out in that order), or an output at once when there is nothing to ask.
/// Resolves to the `output` of the call's `function_call_output`.
pub fn start_call(target: &CallTarget<'_>, call: &FunctionCall) -> BoxFuture<'static, Value> {
    if !target.tools.iter().any(|tool| tool.name == call.name) {
        return ready(format!("unsupported call: {}", call.name));
    }
    let arguments = if call.arguments.trim().is_empty() {
        json!({})
    } else {
        match serde_json::from_str::<Value>(&call.arguments) {
            Ok(arguments) => arguments,
            Err(err) => return ready(format!("failed to parse function arguments: {err}")),
        }
    };
    let params = DynamicToolCallParams {
        thread_id: target.thread_id.to_owned(),
        turn_id: target.turn_id.to_owned(),
        call_id: call.call_id.clone(),
        tool: call.name.clone(),
        arguments,
    };
    let params = serde_json::to_value(params).expect("tool call params serialize");
    let reply = target
        .starter
        .request(methods::TOOL_CALL, params, target.timeout);
    async move { output_of(reply.await) }.boxed()
}

fn ready(text: String) -> BoxFuture<'static, Value> {
    futures::future::ready(Value::String(text)).boxed()
}

/// What the model sees for the host's answer (TURNS §24.3).
fn output_of(reply: Result<Value, ClientRequestError>) -> Value {
    match reply {
        Ok(result) => parse_answer(&result)
            .unwrap_or_else(|| Value::String("dynamic tool response was invalid".to_owned())),
        Err(ClientRequestError::TimedOut(after)) => Value::String(format!(
            "dynamic tool call timed out after {}s",
            after.as_secs()
        )),
        Err(ClientRequestError::Rejected { .. } | ClientRequestError::Disconnected) => {
            Value::String("dynamic tool request failed".to_owned())
        }
    }
}

/// 0.94.0's `{output, success}` (the output as is, whatever `success` says) or 0.169.0's
/// `{contentItems, success}` (texts joined by `\n`, else input content parts; audio dropped).
fn parse_answer(result: &Value) -> Option<Value> {
    if !result.get("success").is_some_and(Value::is_boolean) {
        return None;
    }
    if let Some(output) = result.get("output").and_then(Value::as_str) {
        return Some(Value::String(output.to_owned()));
    }
    let items = result.get("contentItems")?.as_array()?;
    let mut parts = Vec::with_capacity(items.len());
    for item in items {
        match item["type"].as_str()? {
            "inputText" => parts.push(Part::Text(item["text"].as_str()?.to_owned())),
            "inputImage" => parts.push(Part::Image(item["imageUrl"].as_str()?.to_owned())),
            "inputAudio" => {}
            _ => return None,
        }
    }
    if parts.iter().all(|part| matches!(part, Part::Text(_))) {
        let texts: Vec<&str> = parts
            .iter()
            .filter_map(|part| match part {
                Part::Text(text) => Some(text.as_str()),
                Part::Image(_) => None,
            })
            .collect();
        return Some(Value::String(texts.join("\n")));
    }
    Some(Value::Array(
        parts
            .into_iter()
            .map(|part| match part {
                Part::Text(text) => json!({"type": "input_text", "text": text}),
                Part::Image(url) => json!({"type": "input_image", "image_url": url}),
            })
            .collect(),
    ))
}

enum Part {
    Text(String),
    Image(String),
}

/// The output item that answers `call_id` (TURNS §20.4).
pub fn output_item(call_id: &str, output: Value) -> Value {
    json!({"type": "function_call_output", "call_id": call_id, "output": output})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(value: Value) -> DynamicToolSpec {
        serde_json::from_value(value).unwrap()
    }

    fn refusal(specs: Vec<Value>) -> String {
        check(specs.into_iter().map(spec).collect())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn both_declaration_shapes_are_taken() {
        let tools = check(vec![
            spec(json!({"name": "a", "description": "A", "inputSchema": {"type": "object"}})),
            spec(
                json!({"type": "function", "name": "b-2", "description": "B", "inputSchema": {}, "deferLoading": true}),
            ),
        ])
        .unwrap();
        assert_eq!(
            tools[0].offered(),
            json!({"type": "function", "name": "a", "description": "A", "strict": false, "parameters": {"type": "object"}})
        );
        assert_eq!(tools[1].name, "b-2");
    }

    #[test]
    fn bad_declarations_get_their_texts() {
        let schema = json!({"type": "object"});
        let named = |name: &str| json!({"name": name, "description": "", "inputSchema": schema});
        assert_eq!(
            refusal(vec![named("")]),
            "dynamic tool name must not be empty"
        );
        assert_eq!(
            refusal(vec![named(" x")]),
            "dynamic tool name has leading/trailing whitespace:  x"
        );
        assert_eq!(
            refusal(vec![named("a.b")]),
            "dynamic tool name is invalid: a.b"
        );
        assert_eq!(
            refusal(vec![named(&"x".repeat(65))]),
            format!("dynamic tool name is invalid: {}", "x".repeat(65))
        );
        assert_eq!(
            refusal(vec![named("a"), named("a")]),
            "duplicate dynamic tool name: a"
        );
        assert_eq!(
            refusal(vec![
                json!({"name": "a", "description": "", "inputSchema": "x"})
            ]),
            "dynamic tool input schema is not supported for a: expected a JSON object"
        );
        assert_eq!(
            refusal(vec![
                json!({"type": "namespace", "name": "ns", "description": "", "tools": []})
            ]),
            "namespace dynamic tools are not supported: ns"
        );
        let many = (0..129).map(|i| named(&format!("t{i}"))).collect();
        assert_eq!(refusal(many), "too many dynamic tools (max 128)");
    }

    #[test]
    fn answers_become_outputs() {
        assert_eq!(
            output_of(Ok(json!({"output": "Sunny", "success": false}))),
            json!("Sunny")
        );
        assert_eq!(
            output_of(Ok(
                json!({"contentItems": [{"type": "inputText", "text": "a"}, {"type": "inputText", "text": "b"}], "success": true})
            )),
            json!("a\nb")
        );
        assert_eq!(
            output_of(Ok(json!({"contentItems": [
                {"type": "inputText", "text": "see"},
                {"type": "inputImage", "imageUrl": "https://x/y.png"},
                {"type": "inputAudio", "audioUrl": "https://x/y.wav"}], "success": true}))),
            json!([{"type": "input_text", "text": "see"}, {"type": "input_image", "image_url": "https://x/y.png"}])
        );
        assert_eq!(
            output_of(Ok(json!({}))),
            json!("dynamic tool response was invalid")
        );
        assert_eq!(
            output_of(Ok(json!({"output": 3, "success": true}))),
            json!("dynamic tool response was invalid")
        );
        assert_eq!(
            output_of(Err(ClientRequestError::Rejected {
                code: -32000,
                message: "no".into()
            })),
            json!("dynamic tool request failed")
        );
        assert_eq!(
            output_of(Err(ClientRequestError::Disconnected)),
            json!("dynamic tool request failed")
        );
        assert_eq!(
            output_of(Err(ClientRequestError::TimedOut(Duration::from_secs(1)))),
            json!("dynamic tool call timed out after 1s")
        );
    }
}
