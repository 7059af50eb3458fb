"""Messages to the plant systems: the batch record for the MES, shipping manifests for the ERP, their delivery."""
