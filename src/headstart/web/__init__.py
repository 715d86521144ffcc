"""What headstart's two web apps share: the error type they answer with, how an uploaded image
becomes the model's crop, and the one JSON shape of a prediction. `serve` and `studio` import it;
it imports neither."""
