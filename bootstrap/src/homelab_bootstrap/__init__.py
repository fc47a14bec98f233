"""Site configuration, `task configure`, the `task up` stages (metal, cluster, bootstrap, apps), the virtual lab."""
