"""The fleet model: profiles, the settings schema, ports, new profiles."""
