"""Quality filters per route (datatrove BaseFilter blocks) and the gate that applies them to one route."""
