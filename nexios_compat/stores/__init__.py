"""Where history and membership live: pluggable synchronous stores and the async services over them."""
