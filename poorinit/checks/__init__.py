"""The rule's criteria, one module each, and the registry that finds them."""

from .base import Check, CriterionResult, Selector, Status

__all__ = ["Check", "CriterionResult", "Selector", "Status"]
