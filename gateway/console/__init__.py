"""The onboarding console's static files (index.html, app.js, style.css), served by gateway.api.console."""
