"""What every homelab service shares: settings, JSON logs, the HTTP skeleton, and the Kubernetes loop.

Only what two or more services really use lives here; anything else belongs to the service.
"""
