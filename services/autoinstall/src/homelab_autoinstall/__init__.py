"""autoinstall: per-machine Ubuntu autoinstall configs, install state, and the PXE boot decision.

The only holder of install state and install secrets (seed tokens, the k3s token, password hashes). pxe asks it
what each machine should boot; the installer fetches its config from it and reports back to it.
"""
