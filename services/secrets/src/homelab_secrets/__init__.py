"""homelab_secrets: fills and rotates annotated Secrets (mittwald vocabulary read exactly, plus rotation and hooks)."""
