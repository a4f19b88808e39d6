"""Hidden checks for 00-setup-check: an EXAMPLE of the format `slmlab grade --hidden DIR` reads.

Keep your real hidden checks outside the learners' repository (see README.md in this folder). These run after
the learner's last cell, in the learner's kernel: `messages`, `reply` and `answer` are the learner's own; `llm`
was closed by the notebook's clean-up cell. Lines before the first "# CHECK:" run first and are not graded.
"""

# ruff: noqa: F821 - `reply` and the other names are the learner's, defined in the notebook these checks run after
from slmlab import checks

# CHECK: asks for a greeting
# POINTS: 2
request = str(checks.defined("messages")[-1].get("content", "")).lower()
checks.true(any(word in request for word in ("hello", "greet", "welcome")),
            "the user message asks the model to greet the class",
            hint="exercise (a) asks the model to say hello to the class")

# CHECK: reply is the model's own
# POINTS: 3
checks.equal(checks.defined("reply").get("object"), "chat.completion", what='reply["object"]',
             hint="keep the dict llm.create_chat_completion returned, unchanged")
checks.equal(checks.defined("answer"), reply["choices"][0]["message"]["content"], what="answer",
             hint="take the text the model wrote; do not type it in")
