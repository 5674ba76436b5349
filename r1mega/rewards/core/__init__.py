"""What every reward component and the manager share: the types of an item, score, job and
result (``types``), the Component interface (``component``), typed dataclasses from plain dicts
(``dictconf``) and the scored part of a completion: reasoning, answer, program (``extract``)."""
