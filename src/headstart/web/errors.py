"""`ApiError`: a request refused, with the HTTP status and the one-line message the client sees."""


class ApiError(Exception):
    """Answered as `{"error": message}` with `status` (and any `headers`) by the app's exception handler."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers
