"""An endpoint of a provider's batch API, as the batch tier talks to it: JSON requests
whose lost answers are told apart from refusals."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from ...errors import AnswerLost, MalformedResponse, ProviderError
from ..secrets import Secret, redact

if TYPE_CHECKING:
    from ..connection import ClientSettings

__all__ = ["Endpoint"]


class Endpoint:
    """A provider's batch API at ``client``'s base URL, with its headers and key."""

    def __init__(self, client: ClientSettings, auth: dict[str, str], secret: Secret | None) -> None:
        self.base_url = client.base_url
        self.secret = secret
        self.session = aiohttp.ClientSession(
            headers={**client.headers, **auth},
            timeout=aiohttp.ClientTimeout(total=max(60.0, client.timeout)),
        )

    async def close(self) -> None:
        """Close the connections."""
        await self.session.close()

    async def _json(self, method: str, path: str, **request: Any) -> dict[str, Any]:
        """One request; its JSON answer. Connection errors and timeouts are
        :class:`AnswerLost`; an error status is :class:`ProviderError`."""
        try:
            async with self.session.request(method, self.base_url + path, **request) as answer:
                raw = await answer.read()
                status = answer.status
                headers = {k.lower(): v for k, v in answer.headers.items()}
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AnswerLost(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if status != 200:
            try:
                detail = orjson.loads(raw)["error"]["message"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                detail = raw.decode("utf-8", "replace")
            message = redact(f"{method} {path}: {str(detail)[:500]}", self.secret)
            raise ProviderError(status, message, headers)
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise MalformedResponse(f"{method} {path}: the answer is not JSON") from None
        if not isinstance(parsed, dict):
            raise MalformedResponse(f"{method} {path}: the answer is not a JSON object")
        return parsed

    cancel_path = "/batches/{id}/cancel"
    """Where a batch is cancelled (OpenAI's; Anthropic's is under ``/messages``)."""

    async def cancel(self, batch_id: str) -> None:
        """Ask the provider to stop a batch: requests it finished are still answered (and
        billed), the others come back cancelled. One that ended already is left so."""
        try:
            await self._json("POST", self.cancel_path.format(id=batch_id))
        except ProviderError as exc:
            if exc.status not in (400, 409):  # 409: no longer in progress
                raise

    async def _raw(self, path: str) -> bytes:
        """One GET; the answer's bytes as they came (a file's content)."""
        try:
            async with self.session.get(self.base_url + path) as answer:
                raw = await answer.read()
                if answer.status != 200:
                    detail = raw[:300].decode("utf-8", "replace")
                    raise ProviderError(
                        answer.status, redact(f"GET {path}: {detail}", self.secret), {}
                    )
                return raw
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AnswerLost(f"GET {path}: {type(exc).__name__}: {exc}") from None

    @staticmethod
    def now() -> float:
        """The time an intent is stamped with (Unix seconds, as the provider's)."""
        return time.time()
