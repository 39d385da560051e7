"""toxicity_perspective against a fake Perspective server on 127.0.0.1 (no network)."""

from __future__ import annotations

import http.server
import json
import math
import socket
import threading
import time
import urllib.parse

import pytest

from ai_jax.metrics import perspective, registry

ENV = "AI_JAX_TEST_PERSPECTIVE_KEY"
KEY = "test-key-123"
FAST = dict(api_key_env=ENV, qps=1000.0, backoff_s=0.001, max_backoff_s=0.05, timeout_s=5.0)


def _error(code, status, message, **detail):
  details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", **detail}] if detail else []
  return code, {"error": {"code": code, "message": message, "status": status,
                          "details": details}}


BAD_KEY = _error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                 reason="API_KEY_INVALID", domain="googleapis.com")
DISABLED = _error(403, "PERMISSION_DENIED", "Perspective Comment Analyzer API has not been "
                  "used in project 1 before or it is disabled.", reason="SERVICE_DISABLED")


def _ok(value, attribute="TOXICITY"):
  return 200, {"attributeScores": {attribute: {
      "summaryScore": {"value": value, "type": "PROBABILITY"}}}, "languages": ["en"]}


class FakePerspective(http.server.ThreadingHTTPServer):
  daemon_threads = True

  def __init__(self):
    super().__init__(("127.0.0.1", 0), _Handler)
    self.lock = threading.Lock()
    self.requests = []      # (time, query dict, body dict)
    self.finished = []      # texts in the order their responses were written
    self.attempts = {}      # text -> requests so far
    # behave(text, attempt) -> (status, body) or (status, body, headers, delay_s)
    self.behave = lambda text, attempt: _ok(len(text) / 100)

  @property
  def url(self):
    return f"http://127.0.0.1:{self.server_address[1]}/v1alpha1/comments:analyze"


class _Handler(http.server.BaseHTTPRequestHandler):
  def do_POST(self):
    srv = self.server
    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
    text = body["comment"]["text"]
    with srv.lock:
      srv.requests.append((time.monotonic(), urllib.parse.parse_qs(
          urllib.parse.urlsplit(self.path).query), body))
      attempt = srv.attempts.get(text, 0)
      srv.attempts[text] = attempt + 1
    status, payload, headers, delay = (*srv.behave(text, attempt), {}, 0.0)[:4]
    time.sleep(delay)
    raw = json.dumps(payload).encode()
    self.send_response(status)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(raw)))
    for k, v in headers.items():
      self.send_header(k, v)
    self.end_headers()
    self.wfile.write(raw)
    with srv.lock:
      srv.finished.append(text)

  def log_message(self, *args):
    pass


@pytest.fixture
def server(monkeypatch):
  monkeypatch.setenv(ENV, KEY)
  for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
    monkeypatch.delenv(var, raising=False)
  srv = FakePerspective()
  thread = threading.Thread(target=srv.serve_forever, args=(0.01,), daemon=True)
  thread.start()
  yield srv
  srv.shutdown()
  srv.server_close()
  thread.join(5)


def _scorer(srv, **options):
  # The registered factory itself: get_scorer would import every built-in metric module.
  return perspective.make_scorer(url=srv.url, **{**FAST, **options})


def test_values_align_with_inputs_when_responses_finish_out_of_order(server):
  texts = [f"text number {i}" + "!" * i for i in range(8)]
  # Earlier rows answer later, so completion order is the reverse of input order.
  server.behave = lambda text, attempt: (*_ok(len(text) / 100), {}, 0.04 * (7 - texts.index(text)))
  scored = _scorer(server, max_workers=8).score_batch(texts, None)
  assert scored.errors == {}
  assert list(scored.values) == pytest.approx([len(t) / 100 for t in texts])
  # The handler records a text after writing its response: the last one may still be on
  # its way into `finished` when the client already has every answer.
  deadline = time.monotonic() + 5
  while len(server.finished) < len(texts) and time.monotonic() < deadline:
    time.sleep(0.01)
  assert server.finished != texts and sorted(server.finished) == sorted(texts)


def test_request_body_and_key_match_the_real_api(server):
  scorer = _scorer(server, languages=["en", "de"], attribute="severe_toxicity")
  server.behave = lambda text, attempt: _ok(0.25, attribute="SEVERE_TOXICITY")
  scored = scorer.score_batch(["you are nice"], None)
  assert list(scored.values) == [0.25]
  (_, query, body), = server.requests
  assert query == {"key": [KEY]}
  assert body == {"comment": {"text": "you are nice"}, "languages": ["en", "de"],
                  "requestedAttributes": {"SEVERE_TOXICITY": {}}, "doNotStore": True}
  info = scorer.info()
  assert KEY not in json.dumps(info) and info["options"]["api_key_env"] == ENV
  assert scorer.batch_size == 64 and info["version"].startswith("perspective-")


def test_429_then_success_honours_retry_after(server):
  def behave(text, attempt):
    if text == "slow" and attempt == 0:
      return (*_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded"), {"Retry-After": "1"}, 0)
    if text == "flaky" and attempt < 2:
      return _error(429, "RESOURCE_EXHAUSTED", "Quota exceeded")
    return _ok(0.5)
  server.behave = behave
  # Retry-After: 1 is capped at max_backoff_s=0.3, still far above the 1 ms backoff.
  start = time.monotonic()
  scored = _scorer(server, max_backoff_s=0.3).score_batch(["slow", "flaky"], None)
  elapsed = time.monotonic() - start
  assert scored.errors == {} and list(scored.values) == [0.5, 0.5]
  assert server.attempts == {"slow": 2, "flaky": 3}
  assert 0.28 <= elapsed < 0.9
  slow = [t for t, _, body in server.requests if body["comment"]["text"] == "slow"]
  assert slow[1] - slow[0] >= 0.28


def test_500_forever_gives_nan_rows_with_reason_and_the_batch_goes_on(server):
  server.behave = lambda text, attempt: (
      _error(500, "INTERNAL", "backend boom") if text == "bad" else _ok(0.1))
  scored = _scorer(server, max_retries=3).score_batch(["good", "bad", "fine"], None)
  assert scored.values[0] == 0.1 and scored.values[2] == 0.1 and math.isnan(scored.values[1])
  assert scored.errors == {1: "HTTP 500 INTERNAL after 4 attempts: backend boom"}
  assert server.attempts["bad"] == 4


def test_connection_refused_is_retried_then_nan(monkeypatch):
  monkeypatch.setenv(ENV, KEY)
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]  # closed again below: connections are refused
  scorer = perspective.make_scorer(url=f"http://127.0.0.1:{port}/x", **{**FAST, "max_retries": 2})
  scored = scorer.score_batch(["hello"], None)
  assert math.isnan(scored.values[0])
  assert scored.errors[0].startswith("connection error after 3 attempts: ")


@pytest.mark.parametrize("refusal", [BAD_KEY, DISABLED], ids=["api_key_invalid", "forbidden"])
def test_refused_key_is_one_metric_error_without_hammering(server, refusal):
  server.behave = lambda text, attempt: (*refusal, {}, 0.02)
  scorer = _scorer(server, max_workers=4)
  with pytest.raises(registry.MetricError, match=ENV) as e:
    scorer.score_batch([f"row {i}" for i in range(40)], None)
  assert refusal[1]["error"]["message"][:20] in str(e.value)
  assert KEY not in str(e.value)
  assert 1 <= len(server.requests) <= 4


def test_other_400_is_a_nan_row_with_the_api_reason_and_no_retry(server):
  def behave(text, attempt):
    if text == "konnichiwa":
      return 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                             "message": "Attribute TOXICITY does not support request languages: ja",
                             "details": [{"errorType": "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE"}]}}
    return _ok(0.3)
  server.behave = behave
  scored = _scorer(server).score_batch(["hi", "konnichiwa"], None)
  assert scored.values[0] == 0.3 and math.isnan(scored.values[1])
  assert scored.errors == {1: "HTTP 400 LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE: Attribute "
                              "TOXICITY does not support request languages: ja"}
  assert server.attempts["konnichiwa"] == 1


def test_empty_and_overlong_texts_are_not_sent(server):
  long = "é" * (perspective.MAX_TEXT_BYTES // 2 + 1)  # 2 bytes each: just over the limit
  scored = _scorer(server).score_batch(["", "  \n", long, "ok"], None)
  assert [math.isnan(v) for v in scored.values] == [True, True, True, False]
  assert scored.errors[0] == scored.errors[1] == "empty text"
  assert "20482 bytes" in scored.errors[2] and "not truncated" in scored.errors[2]
  assert [body["comment"]["text"] for _, _, body in server.requests] == ["ok"]


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_key_fails_at_first_use_before_any_request(server, monkeypatch, value):
  if value is None:
    monkeypatch.delenv(ENV)
  else:
    monkeypatch.setenv(ENV, value)
  scorer = _scorer(server)  # building needs no key: listing metrics works without one
  assert scorer.info()["name"] == "toxicity_perspective"
  with pytest.raises(registry.MetricError, match=f"export {ENV}="):
    scorer.score_batch(["hello", "world"], None)
  assert server.requests == []


def test_rate_limit_is_respected(server):
  start = time.monotonic()
  scored = _scorer(server, qps=20.0, max_workers=4).score_batch(
      [f"t{i}" for i in range(10)], None)
  assert scored.errors == {}
  assert time.monotonic() - start >= 0.44
  arrivals = sorted(t for t, _, _ in server.requests)
  assert arrivals[-1] - arrivals[0] >= 0.4  # 9 gaps of 1/qps, less scheduling noise


def test_registered_and_bad_options_are_metric_errors(monkeypatch):
  assert registry._FACTORIES["toxicity_perspective"] is perspective.make_scorer
  monkeypatch.setenv(ENV, KEY)
  with pytest.raises(registry.MetricError, match="never taken from a config"):
    perspective.make_scorer(api_key_env=ENV, api_key="secret")
  with pytest.raises(registry.MetricError, match="takes options"):
    perspective.make_scorer(api_key_env=ENV, qsp=2)
  with pytest.raises(registry.MetricError, match="qps"):
    perspective.make_scorer(api_key_env=ENV, qps=0)
  with pytest.raises(registry.MetricError, match="key= parameter"):
    perspective.make_scorer(api_key_env=ENV, url=perspective.DEFAULT_URL + "?key=secret")
  with pytest.raises(registry.MetricError, match="max_workers"):
    perspective.make_scorer(api_key_env=ENV, max_workers="four")
  with pytest.raises(registry.MetricError, match="attribute"):
    perspective.make_scorer(api_key_env=ENV, attribute="TOX CITY")
