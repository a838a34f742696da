"""Staff roles (who may do what) and the audit log (who did what)."""
