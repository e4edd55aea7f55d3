"""Agentic RL: multi-turn episodes with tools (docs/agents.md).

  env.py        the Environment interface (reset, step -> Step) and its registry (@register_env)
  modules.py    imports the built-in environments and the user's (rollout.agent.modules)
  tools.py      tool processes: environment calls run there, each with a timeout, killable
  episode.py    one episode on an engine: token-in/token-out turns, observation suffixes, budgets
  gateway.py    agents written against the OpenAI API: each engine's chat-completions endpoint
  calculator.py the built-in tool task (multi-digit products with a calculator)
  python_tool.py Python in the verifier's sandbox as a tool (env: python)
"""

from rlsys.agents.env import ENVS, Environment, Step, register_env  # noqa: F401
from rlsys.agents.gateway import register_agent  # noqa: F401
