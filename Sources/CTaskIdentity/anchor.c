void lockcore_task_identity_anchor(void) {}
