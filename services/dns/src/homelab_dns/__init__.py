"""homelab_dns: DNS records that follow Ingresses and Services (embedded authoritative server or RFC 2136)."""
