"""The console: the management API (`console.api`) and, later, its server-rendered pages."""
