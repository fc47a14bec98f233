"""The homelab dashboard: every app discovered from Ingresses (and a static list), with health that means Ready."""
