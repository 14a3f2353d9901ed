"""Things the agent samples once per interval."""
