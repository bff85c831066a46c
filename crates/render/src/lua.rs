//! `auth.lua`: Dovecot's passdb, userdb and user iteration over couchmail's internal HTTP endpoint.
//!
//! The script is static except for two constants, the endpoint's base URL
//! and its bearer secret, which are written as escaped Lua string literals.
//! The protocol is the table "Dovecot auth over HTTP" of docs/runtime.md.

use crate::stack::Stack;
use crate::text::GENERATED;

/// How long the auth worker waits for a whole answer, in milliseconds. Dovecot
/// 2.3 has no `timeout` key: both this and the connect timeout must be set.
const REQUEST_TIMEOUT_MSECS: u32 = 5000;

/// How long the auth worker waits for the TCP connection, in milliseconds.
const CONNECT_TIMEOUT_MSECS: u32 = 1000;

/// The script after the constants; it reads `BASE_URL` and `SECRET`.
const BODY: &str = r#"
local REQUEST_TIMEOUT_MSECS = @REQUEST_TIMEOUT_MSECS@
local CONNECT_TIMEOUT_MSECS = @CONNECT_TIMEOUT_MSECS@

-- One client per auth worker process, made at the first lookup: the script
-- is also loaded where no lookup ever runs.
-- Dovecot 2.4 names these keys request_timeout, connect_timeout and
-- request_max_attempts (HTTP client settings); the rest of the script is
-- the same on 2.4.
local http_client = nil

local function client()
  if http_client == nil then
    http_client = dovecot.http.client {
      request_timeout_msecs = REQUEST_TIMEOUT_MSECS,
      connect_timeout_msecs = CONNECT_TIMEOUT_MSECS,
      max_attempts = 1,
      user_agent = "couchmail-dovecot-auth",
    }
  end
  return http_client
end

-- RFC 3986 section 2.3: unreserved characters stay, every other byte becomes %XX.
local function percent_encode(text)
  return (string.gsub(text, "[^A-Za-z0-9%-._~]", function(character)
    return string.format("%%%02X", string.byte(character))
  end))
end

-- GET one path of the endpoint. Transport failures never raise: they come
-- back as statuses of 9000 and above (9003 connection refused, 9008 timeout).
local function get(path)
  local request = client():request { url = BASE_URL .. path, method = "GET" }
  request:add_header("Authorization", "Bearer " .. SECRET)
  request:add_header("Accept", "text/plain")
  local response = request:submit()
  return response:status(), response:payload() or "", response:reason() or ""
end

-- The body is key=value lines; a value may hold further '=' signs.
local function parse_fields(body)
  local fields = {}
  for line in string.gmatch(body, "[^\r\n]+") do
    local key, value = string.match(line, "^([^=]+)=(.*)$")
    if key ~= nil then
      fields[key] = value
    end
  end
  return fields
end

local function failure(what, status, reason)
  return string.format("couchmail %s lookup failed: HTTP %d %s", what, status, reason)
end

-- 200 gives the {SCHEME} hash for Dovecot to verify; anything but a clear
-- "unknown" or "disabled" is a temporary failure, never a wrong password.
function auth_passdb_lookup(request)
  local status, body, reason = get("/dovecot/passdb/" .. percent_encode(request.user))
  if status == 200 then
    local fields = parse_fields(body)
    if fields.password == nil or fields.password == "" then
      return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, "couchmail passdb answer has no password"
    end
    return dovecot.auth.PASSDB_RESULT_OK, fields
  elseif status == 404 then
    return dovecot.auth.PASSDB_RESULT_USER_UNKNOWN, "unknown user"
  elseif status == 403 then
    return dovecot.auth.PASSDB_RESULT_USER_DISABLED, "mailbox or domain disabled"
  end
  return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, failure("passdb", status, reason)
end

-- 200 gives home, uid, gid and quota_rule; a failure makes LMTP defer the mail.
function auth_userdb_lookup(request)
  local status, body, reason = get("/dovecot/userdb/" .. percent_encode(request.user))
  if status == 200 then
    return dovecot.auth.USERDB_RESULT_OK, parse_fields(body)
  elseif status == 404 then
    return dovecot.auth.USERDB_RESULT_USER_UNKNOWN, "unknown user"
  end
  return dovecot.auth.USERDB_RESULT_INTERNAL_FAILURE, failure("userdb", status, reason)
end

-- doveadm user '*': one user per line. Raising makes Dovecot report an
-- iteration error instead of an empty list.
function auth_userdb_iterate()
  local status, body, reason = get("/dovecot/iterate")
  if status ~= 200 then
    error(failure("iterate", status, reason))
  end
  local users = {}
  for user in string.gmatch(body, "[^\r\n]+") do
    users[#users + 1] = user
  end
  return users
end
"#;

/// Renders `auth.lua`.
pub(crate) fn auth_lua(stack: &Stack) -> String {
    let base_url = stack.auth_endpoint.base_url.trim_end_matches('/');
    let mut out = String::new();
    out.push_str(&format!("-- {GENERATED}\n"));
    out.push_str("-- Dovecot 2.3 Lua passdb, userdb and iteration over couchmail's internal HTTP endpoint.\n");
    out.push_str("-- It holds the endpoint's bearer secret: keep it root:dovecot 0640.\n\n");
    out.push_str(&format!("local BASE_URL = {}\n", lua_string(base_url)));
    out.push_str(&format!("local SECRET = {}\n", lua_string(&stack.auth_endpoint.secret)));
    out.push_str(
        &BODY
            .replace("@REQUEST_TIMEOUT_MSECS@", &REQUEST_TIMEOUT_MSECS.to_string())
            .replace("@CONNECT_TIMEOUT_MSECS@", &CONNECT_TIMEOUT_MSECS.to_string()),
    );
    out
}

/// A double-quoted Lua string literal holding exactly `text`: printable
/// ASCII stays, `"` and `\` are escaped, every other byte becomes `\ddd`.
fn lua_string(text: &str) -> String {
    let mut literal = String::with_capacity(text.len() + 2);
    literal.push('"');
    for byte in text.bytes() {
        match byte {
            b'"' | b'\\' => {
                literal.push('\\');
                literal.push(char::from(byte));
            }
            0x20..=0x7e => literal.push(char::from(byte)),
            _ => literal.push_str(&format!("\\{byte:03}")),
        }
    }
    literal.push('"');
    literal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lua_string_escapes_quotes_backslashes_and_control_bytes() {
        assert_eq!(lua_string("plain"), "\"plain\"");
        assert_eq!(lua_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(lua_string("a\nb\u{7f}"), "\"a\\010b\\127\"");
        assert_eq!(lua_string("é"), "\"\\195\\169\"");
    }
}
