"""The suite layer: the registry of CRM Suite's services and the `crm` command built on it."""
