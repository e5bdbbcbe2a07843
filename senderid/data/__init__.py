"""Reference data packaged with the code (copied from the team's shared data; see docs/senderid.md)."""
