"""In-process tests: the API driven with WebsocketCommunicator, fakes in place of other processes."""
