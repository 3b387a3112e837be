"""The service's data layer: schema (typed models), session (engine factory) and repository (SQL)."""
