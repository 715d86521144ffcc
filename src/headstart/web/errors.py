"""`ApiError`: a request refused, with the HTTP status and the one-line message the client sees."""


class ApiError(Exception):
    """Answered as `{"error": message}` with `status` (and any `headers`) by the app's exception handler."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def validation_message(errors: list[dict]) -> str:
    """A request that failed validation, as one sentence: the first problem and where it is."""
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return f"{where or 'request'}: {first.get('msg', 'invalid').lower()}"
