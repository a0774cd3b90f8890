"""What users come for: FIMs of training configurations and of target properties,
information matching, QUESTS entropy, LTAU uncertainty. A new score is one module
here. Imports the layers below, never stages."""
