"""senderid package."""
