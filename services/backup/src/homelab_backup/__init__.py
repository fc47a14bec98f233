"""homelab_backup: 3-2-1 restic backups of every PVC, with verified restore drills."""
