"""LLM providers behind one tiny interface: `ask(prompt) -> str` or `ProviderError`.

Three types: Groq and Anthropic through their SDKs, and any server speaking OpenAI's
chat-completions API (Ollama, vLLM, llama.cpp, OpenRouter, LiteLLM) through plain httpx.
fleet.toml's `[[watchdog.providers]]` declares the chain; without it, Groq then Anthropic.

The SDKs are imported inside `ask`, never at module level: importing them costs hundreds of
milliseconds and `fleetctl status` imports this package's neighbours. SDK retries are off
(`max_retries=0`) because the chain owns the policy: one honoured Retry-After, a total budget,
then the next provider.

Every call has an overall deadline, not only the SDK's per-read timeout (a server that sends
its headers at once and then one byte every few seconds never trips a read timeout). The SDK
call (client, request, response) runs in a daemon worker thread; the caller waits at most
the deadline, then closes the client from yet another daemon thread (which fails the worker's
pending read) and abandons the worker: it touches nothing fleetctl uses, holds no lock, and
cannot keep the process alive at exit. The SDK import happens before the clock starts: it is
local work (seconds on a busy host, once per process: anthropic 2.x alone takes 3-8 s), not
something a server can stretch, and counting it would time out a healthy provider on the first
call of a run. `prepare()` does it; the chain prepares every provider before its budget starts
(else a provider's import would eat the time left and its call still get the time from before
the import, running past the budget), and the watchdog `preload()`s the chain in the background
while it confirms a failure.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from fleetctl.common.errors import FleetError
from fleetctl.diagnosis.prompt import Prompt
from fleetctl.fleet.schema import PROVIDER_TYPES

MAX_TOKENS = 150  # the answer is one small JSON object
assert set(PROVIDER_TYPES) == {"groq", "anthropic", "openai"}  # the types built below
DEFAULT_KEY_ENV = {"groq": "GROQ_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
DEFAULT_TIMEOUT = 8.0
# Explicit defaults: without them the SDKs fall back to GROQ_BASE_URL / ANTHROPIC_BASE_URL from
# the environment, which would let an inherited variable send our (redacted) logs elsewhere.
GROQ_BASE_URL = "https://api.groq.com"
ANTHROPIC_BASE_URL = "https://api.anthropic.com"


class ProviderError(Exception):
    """A provider gave no usable answer. `reason` is short and never holds the API key."""

    def __init__(self, reason: str, *, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.status = status


class Provider(Protocol):
    name: str
    timeout: float

    def prepare(self) -> None: ...

    def ask(self, prompt: Prompt, *, timeout: float | None = None) -> str: ...


def preload(chain: Sequence[Provider]) -> threading.Thread | None:
    """Import the chain's SDKs in a daemon thread (None when there is nothing to do): a run that
    has a failure to confirm overlaps the import with its confirmation looks. A later
    `prepare()` or `ask()` waits for the import lock, so nothing is imported twice."""
    if not chain:
        return None

    def work() -> None:
        for p in chain:
            try:
                p.prepare()
            except Exception:  # noqa: BLE001 - ask() meets the same error and records it
                pass

    t = threading.Thread(target=work, name="fleetctl-llm-preload", daemon=True)
    t.start()
    return t


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from `retry-after-ms`, `retry-after` (seconds or HTTP date); None if absent/bad."""
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (ValueError, TypeError, OverflowError):
        return None


T = TypeVar("T")


def call_with_deadline(call: Callable[[], T], seconds: float, abort: Callable[[], object] | None = None) -> T:
    """`call()`'s result or exception, or ProviderError("timeout") once `seconds` have passed,
    whatever the call is doing then: it is left behind in its daemon thread, and `abort` (which
    closes the HTTP client) runs in another daemon thread, so not even a blocking close can
    delay the caller."""
    outcome: list[tuple[bool, Any]] = []
    done = threading.Event()

    def work() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as e:  # handed to the caller, who decides
            outcome.append((False, e))
        finally:
            done.set()

    threading.Thread(target=work, name="fleetctl-llm-call", daemon=True).start()
    if not done.wait(max(0.0, seconds)):
        if abort is not None:
            threading.Thread(target=abort, name="fleetctl-llm-abort", daemon=True).start()
        raise ProviderError("timeout")
    ok, value = outcome[0]
    if ok:
        return value  # type: ignore[no-any-return]
    raise value


def _translate(sdk: Any, exc: Exception) -> ProviderError:
    """Map either SDK's exception hierarchy (they share the Stainless shape) to ProviderError."""
    if isinstance(exc, sdk.APITimeoutError):  # subclass of APIConnectionError: test first
        return ProviderError("timeout")
    if isinstance(exc, sdk.APIConnectionError):
        return ProviderError("connection error")
    if isinstance(exc, sdk.APIStatusError):
        status: int = exc.status_code
        if status == 429:
            retry_after = parse_retry_after(exc.response.headers)
            return ProviderError("rate limited (429)", retry_after=retry_after, status=429)
        if status in (401, 403):
            return ProviderError(f"auth error ({status})", status=status)
        if status >= 500:
            return ProviderError(f"server error ({status})", status=status)
        return ProviderError(f"HTTP {status}", status=status)
    return ProviderError(f"{type(exc).__name__}")


@dataclass
class GroqProvider:
    api_key: str
    model: str = "llama-3.1-8b-instant"
    base_url: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    name: str = "groq"

    def prepare(self) -> None:
        import groq  # noqa: F401 - before the clock starts: see the module docstring

    def ask(self, prompt: Prompt, *, timeout: float | None = None) -> str:
        self.prepare()

        seconds = timeout if timeout is not None else self.timeout
        clients: list[Any] = []
        return call_with_deadline(
            lambda: self._ask(prompt, seconds, clients), seconds, lambda: [c.close() for c in clients]
        )

    def _ask(self, prompt: Prompt, seconds: float, clients: list[Any]) -> str:
        import groq

        client = groq.Groq(
            api_key=self.api_key,
            base_url=self.base_url or GROQ_BASE_URL,
            timeout=seconds,
            max_retries=0,
        )
        clients.append(client)
        try:
            with client:
                resp = client.chat.completions.create(
                    model=self.model,
                    messages=[
                        {"role": "system", "content": prompt.system},
                        {"role": "user", "content": prompt.user},
                    ],
                    max_tokens=MAX_TOKENS,
                    temperature=0,
                )
        except groq.GroqError as e:
            raise _translate(groq, e) from None
        except ValueError:  # the SDK lets json.JSONDecodeError escape for a non-JSON 200 body
            raise ProviderError("malformed response") from None
        try:
            content = resp.choices[0].message.content
        except (AttributeError, IndexError, TypeError):
            raise ProviderError("malformed response") from None
        if not isinstance(content, str):
            raise ProviderError("empty answer")
        return content


@dataclass
class AnthropicProvider:
    api_key: str
    # Not "claude-3-5-haiku-latest": the SDK's own table gives it end-of-life 2026-02-19 and
    # warns (DeprecationWarning) on every call; the API answers 404 for retired models.
    model: str = "claude-haiku-4-5"
    base_url: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    name: str = "anthropic"

    def prepare(self) -> None:
        import anthropic  # noqa: F401 - before the clock starts: see the module docstring

    def ask(self, prompt: Prompt, *, timeout: float | None = None) -> str:
        self.prepare()

        seconds = timeout if timeout is not None else self.timeout
        clients: list[Any] = []
        return call_with_deadline(
            lambda: self._ask(prompt, seconds, clients), seconds, lambda: [c.close() for c in clients]
        )

    def _ask(self, prompt: Prompt, seconds: float, clients: list[Any]) -> str:
        import anthropic

        client = anthropic.Anthropic(
            api_key=self.api_key,
            base_url=self.base_url or ANTHROPIC_BASE_URL,
            timeout=seconds,
            max_retries=0,
        )
        clients.append(client)
        try:
            with client:
                resp = client.messages.create(
                    model=self.model,
                    system=prompt.system,
                    messages=[{"role": "user", "content": prompt.user}],
                    # No temperature: SDK 2.x removed sampling parameters and API version
                    # 2026-10-21 (its default) rejects them with 400, even temperature=0.
                    max_tokens=MAX_TOKENS,
                )
        except anthropic.AnthropicError as e:
            raise _translate(anthropic, e) from None
        except ValueError:  # the SDK lets json.JSONDecodeError escape for a non-JSON 200 body
            raise ProviderError("malformed response") from None
        try:
            texts = [b.text for b in resp.content if isinstance(b, anthropic.types.TextBlock)]
        except (AttributeError, TypeError):
            raise ProviderError("malformed response") from None
        if not texts:
            raise ProviderError("empty answer")
        return "".join(texts)


@dataclass
class OpenAICompatibleProvider:
    """Any server speaking OpenAI's chat-completions API: POST {base_url}/chat/completions.

    Plain httpx rather than the openai SDK: one request, one response shape, no extra
    dependency; the same status mapping as the SDK providers. `api_key` may be empty for a
    local server that wants none (Ollama, llama.cpp): then no Authorization header is sent.
    """

    base_url: str
    model: str
    api_key: str = ""
    timeout: float = DEFAULT_TIMEOUT
    name: str = "openai"

    def prepare(self) -> None:
        import httpx  # noqa: F401 - before the clock starts: see the module docstring

    def ask(self, prompt: Prompt, *, timeout: float | None = None) -> str:
        import httpx

        url = self.base_url.rstrip("/") + "/chat/completions"
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": prompt.system},
                {"role": "user", "content": prompt.user},
            ],
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
            "stream": False,
        }
        try:
            resp = httpx.post(
                url, json=body, headers=headers, timeout=timeout if timeout is not None else self.timeout
            )
        except httpx.TimeoutException:
            raise ProviderError("timeout") from None
        except httpx.HTTPError:
            raise ProviderError("connection error") from None
        status = resp.status_code
        if status == 429:
            raise ProviderError("rate limited (429)", retry_after=parse_retry_after(resp.headers), status=429)
        if status in (401, 403):
            raise ProviderError(f"auth error ({status})", status=status)
        if status >= 500:
            raise ProviderError(f"server error ({status})", status=status)
        if status != 200:
            raise ProviderError(f"HTTP {status}", status=status)
        try:
            content = resp.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise ProviderError("malformed response") from None
        if not isinstance(content, str) or not content:
            raise ProviderError("empty answer")
        return content


def _timeout_from(env: Mapping[str, str]) -> float:
    raw = env.get("FLEETCTL_LLM_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 120:
        raise FleetError(f"FLEETCTL_LLM_TIMEOUT={raw!r}: expected seconds between 0 and 120")
    return value


def providers_from_env(env: Mapping[str, str]) -> list[Provider]:
    """Groq first (cheapest, fastest), then Anthropic; a provider without a key is absent.

    Keys: GROQ_API_KEY, ANTHROPIC_API_KEY. Optional: FLEETCTL_GROQ_BASE_URL,
    FLEETCTL_ANTHROPIC_BASE_URL, FLEETCTL_GROQ_MODEL, FLEETCTL_ANTHROPIC_MODEL,
    FLEETCTL_LLM_TIMEOUT (seconds per request).
    """
    timeout = _timeout_from(env)
    providers: list[Provider] = []
    if key := env.get("GROQ_API_KEY", "").strip():
        providers.append(
            GroqProvider(
                api_key=key,
                model=env.get("FLEETCTL_GROQ_MODEL", "").strip() or GroqProvider.model,
                base_url=env.get("FLEETCTL_GROQ_BASE_URL", "").strip() or None,
                timeout=timeout,
            )
        )
    if key := env.get("ANTHROPIC_API_KEY", "").strip():
        providers.append(
            AnthropicProvider(
                api_key=key,
                model=env.get("FLEETCTL_ANTHROPIC_MODEL", "").strip() or AnthropicProvider.model,
                base_url=env.get("FLEETCTL_ANTHROPIC_BASE_URL", "").strip() or None,
                timeout=timeout,
            )
        )
    return providers


def providers_from_config(
    entries: Sequence[Mapping[str, Any]],
    env: Mapping[str, str],
    *,
    groq_model: str = GroqProvider.model,
    anthropic_model: str = AnthropicProvider.model,
) -> list[Provider]:
    """The chain fleet.toml declares (`[[watchdog.providers]]`, already checked by the schema),
    in its order. A provider whose key variable is unset is absent, as in providers_from_env;
    an "openai" entry without `api_key_env` needs no key (a local server)."""
    timeout = _timeout_from(env)
    out: list[Provider] = []
    for e in entries:
        kind = e["type"]
        name = e.get("name", kind)
        key_env = e.get("api_key_env") or DEFAULT_KEY_ENV.get(kind, "")
        key = env.get(key_env, "").strip() if key_env else ""
        if key_env and not key:
            continue
        if kind == "groq":
            base = e.get("base_url") or env.get("FLEETCTL_GROQ_BASE_URL", "").strip() or None
            out.append(GroqProvider(key, e.get("model") or groq_model, base, timeout, name))
        elif kind == "anthropic":
            base = e.get("base_url") or env.get("FLEETCTL_ANTHROPIC_BASE_URL", "").strip() or None
            out.append(AnthropicProvider(key, e.get("model") or anthropic_model, base, timeout, name))
        else:
            out.append(OpenAICompatibleProvider(e["base_url"], e["model"], key, timeout, name))
    return out
