"""The built-in CRM plugins, registered exactly like third-party ones (see services.common.plugins)."""
