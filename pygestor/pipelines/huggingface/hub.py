"""Access to ``huggingface_hub``, and its errors turned into one-line Pygestor errors.

``huggingface_hub`` is imported inside the functions that call it, never when the pipeline module
is imported (the registry, the command line and datasets of other pipelines do not need it).

Tokens: ``HF_TOKEN`` or the standard ``huggingface_hub`` login, read by ``huggingface_hub`` when a
request is made; a token is never an option, never stored, never printed.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pygestor.backends.retry import call_with_retries
from pygestor.config import Settings
from pygestor.errors import ConfigError, PygestorError, SourceError, short_text


def hub_module() -> Any:
    """The ``huggingface_hub`` module (imported on first use only)."""
    try:
        import huggingface_hub
    except ImportError:
        raise ConfigError("the HuggingFaceParquet pipeline needs huggingface_hub: "
                          "pip install 'pygestor[hf]'") from None
    return huggingface_hub


def _transport_errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError):
            found.append(__import__(module).TransportError)
    return tuple(found)


def token_available() -> bool:
    """Whether huggingface_hub would send a token (HF_TOKEN or a login); the token is not read
    into Pygestor's objects."""
    with contextlib.suppress(Exception):
        return hub_module().get_token() is not None
    return False


def hub_error(exc: BaseException, repo: str, *, revision: str | None = None,
              path: str | None = None, url: str | None = None) -> PygestorError:
    """A one-line :class:`SourceError` for an exception of huggingface_hub or the network.

    Transient failures (5xx, 408, 429, dropped connections, time-outs) are marked
    ``transient`` so the download machinery retries them.
    """
    from huggingface_hub import errors

    page = f"{_endpoint().rstrip('/')}/datasets/{repo}"
    where = url or page
    if isinstance(exc, PygestorError):
        return exc
    if isinstance(exc, errors.GatedRepoError):
        if token_available():
            return SourceError(f"{repo} is gated and the Hugging Face token in use has no access "
                               f"to it: accept its terms on the Hub ({page}) with that account, "
                               "or set HF_TOKEN to a token that has access")
        return SourceError(f"{repo} is gated: accept its terms on the Hub ({page}) and set "
                           "HF_TOKEN (or log in with 'hf auth login')")
    if isinstance(exc, errors.DisabledRepoError):
        return SourceError(f"{repo} is disabled on the Hub ({page}); it cannot be downloaded")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return SourceError(f"no dataset repo {repo!r} on the Hub ({_endpoint()}): check the "
                           "owner/name spelling; a private repo also needs HF_TOKEN")
    if isinstance(exc, errors.RevisionNotFoundError):
        return SourceError(f"{repo} has no revision {revision!r} on the Hub: use a branch, tag "
                           "or commit sha that exists (see the repo's history on the Hub)")
    if isinstance(exc, errors.EntryNotFoundError):
        return SourceError(f"{path or 'a file'} is missing from {repo} at revision {revision}: "
                           "it was removed upstream; run 'pygestor check-updates' and "
                           "'pygestor download --update'")
    if isinstance(exc, errors.HfHubHTTPError):
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        detail = getattr(exc, "server_message", None) or ""
        detail = f": {short_text(detail)}" if detail.strip() else ""
        hint = ""
        if status in (401, 403):
            hint = ("; the Hub refused the token in use: check HF_TOKEN or 'hf auth login'"
                    if token_available() else "; this repo needs a token: set HF_TOKEN")
        error = SourceError(f"the Hub answered {status or 'an error'} for {where}{detail}{hint}")
        error.transient = status is None or status >= 500 or status in (408, 429)  # type: ignore[attr-defined]
        return error
    if isinstance(exc, _transport_errors()) or type(exc).__name__.endswith(
            ("Timeout", "ProtocolError", "NetworkError", "ConnectError", "ReadError")):
        error = SourceError(f"network failure talking to the Hub for {where}: "
                            f"{type(exc).__name__}: {short_text(exc)}")
        error.transient = True  # type: ignore[attr-defined]
        return error
    if isinstance(exc, OSError):
        return SourceError(f"failed downloading {where}: {short_text(exc)}")
    return SourceError(f"unexpected error from the Hub for {where}: {type(exc).__name__}: "
                       f"{short_text(exc)}")


def _endpoint() -> str:
    with contextlib.suppress(Exception):
        from huggingface_hub import constants

        return constants.ENDPOINT
    return "https://huggingface.co"


def dataset_info(repo: str, revision: str, settings: Settings) -> Any:
    """One ``dataset_info(files_metadata=True)`` call, with retries and clear errors."""
    hub = hub_module()

    def call() -> Any:
        try:
            return hub.HfApi().dataset_info(repo, revision=revision, files_metadata=True,
                                            timeout=settings.timeout)
        except Exception as exc:  # noqa: BLE001 - translated to one clear error
            url = f"{_endpoint().rstrip('/')}/api/datasets/{repo}/revision/{revision}"
            raise hub_error(exc, repo, revision=revision, url=url) from None
    return call_with_retries(call, attempts=settings.retries, backoff=settings.retry_backoff,
                             what=f"reading {repo}@{revision} from the Hub")
