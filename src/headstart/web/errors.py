"""`ApiError`: a request refused, with the HTTP status and the one-line message the client sees."""


class ApiError(Exception):
    """Answered as `{"error": message}` with `status` by the app's exception handler."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message
