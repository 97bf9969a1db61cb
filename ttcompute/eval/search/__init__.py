"""Search methods over a policy's candidates, one per module, and the selection rules they share."""
