"""Operator control: PackML, users and roles, electronic signatures and the audit trail."""
