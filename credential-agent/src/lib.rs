//! The credential agent. Not implemented yet: see the project's issue for the
//! credential-agent (token verification, STS exchange, cache and refresh).
