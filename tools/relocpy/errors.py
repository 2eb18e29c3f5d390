"""Errors a user can cause: each carries one line of text and an exit code.

The CLI turns any `RelocpyError` into `relocpy: error: <message>` on stderr and
exits with its code; anything else is a bug and keeps its traceback.
"""


class RelocpyError(Exception):
    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(RelocpyError):
    """A command was called without what it needs."""


class RecipeError(RelocpyError):
    """A recipe file is malformed or a cross-reference does not resolve."""


class UnknownNameError(RelocpyError):
    """An unknown python, target or variant was asked for."""


class SourceError(RelocpyError):
    """A source could not be fetched, or its bytes do not match its pin."""


class HashMismatchError(SourceError):
    pass


class StepFailed(RelocpyError):
    """A build step (a subprocess) failed; the message carries its log tail."""

    exit_code = 1


class ValidationFailed(RelocpyError):
    """A built artifact violates a relocation or portability rule."""

    exit_code = 1


class TrustError(RelocpyError):
    """A signature, key, expiry or serial check refused an index."""

    exit_code = 1


class KeyFileError(RelocpyError):
    """A private key file or a public key string cannot be used."""


class IndexError_(RelocpyError):
    """An index cannot be built or read (a dist dir or index file is not usable)."""


class PublishError(RelocpyError):
    """A publish target refused or would lose data; nothing more was written."""

    exit_code = 1


class InstallError(RelocpyError):
    """No artifact fits, or an artifact cannot be installed."""

    exit_code = 1


class UnsafeArchiveError(InstallError):
    """An archive member would land outside the target or is not a plain file, dir or link."""


class SignatureMismatch(TrustError):
    """A signature by a trusted key does not match the bytes: tampered or corrupt."""


class MissingExtra(RelocpyError):
    """A command needs a module of an extra (relocpy[build], relocpy[s3]) that is not installed."""


class EngineError(RelocpyError):
    """The container engine is missing, unreachable, or refused a request."""
