"""TRM's trainer names HRM `recursive_reasoning.hrm@HierarchicalReasoningModel_ACTV1`; it is this project's HRM
(models/hrm/hrm_act_v1.py), so configs written for either trainer load the same model."""
from models.hrm.hrm_act_v1 import HierarchicalReasoningModel_ACTV1

__all__ = ["HierarchicalReasoningModel_ACTV1"]
