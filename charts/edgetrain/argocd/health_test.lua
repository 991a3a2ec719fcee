-- Runs health.lua against fixtures as Argo CD would (global `obj`, returned table).
local dir = arg[0]:match("(.*/)") or "./"
local chunk = assert(loadfile(dir .. "health.lua"))

local function check(name, o, want)
  obj = o
  local hs = chunk()
  if hs.status ~= want then
    error(string.format("%s: want %s, got %s (%s)", name, want, hs.status, hs.message), 0)
  end
  print("ok - " .. name)
end

local function cond(t, s, gen, reason)
  return { type = t, status = s, observedGeneration = gen, reason = reason or t, message = "m" }
end

check("no status yet", { kind = "EdgeComputeTarget", metadata = { generation = 1 } }, "Progressing")
check("ready for current generation", { kind = "EdgeComputeTarget", metadata = { generation = 2 },
  status = { conditions = { cond("Ready", "True", 2), cond("Stalled", "False", 2) } } }, "Healthy")
check("ready for an old generation", { kind = "EdgeComputeTarget", metadata = { generation = 3 },
  status = { conditions = { cond("Ready", "True", 2) } } }, "Progressing")
check("stalled", { kind = "ModelRelease", metadata = { generation = 1 },
  status = { conditions = { cond("Ready", "False", 1, "SecretNotFound"), cond("Stalled", "True", 1, "SecretNotFound") } } }, "Degraded")
check("reconciling", { kind = "ModelRelease", metadata = { generation = 1 },
  status = { conditions = { cond("Ready", "False", 1, "Pushing"), cond("Reconciling", "True", 1, "Pushing") } } }, "Progressing")
check("failed training run", { kind = "TrainingRun", metadata = { generation = 1 },
  status = { phase = "Failed", conditions = { cond("Ready", "False", 1, "DataExfiltration") } } }, "Degraded")
check("suspended training run", { kind = "TrainingRun", metadata = { generation = 1 }, spec = { suspend = true },
  status = { phase = "Pending", conditions = {} } }, "Suspended")
check("succeeded training run", { kind = "TrainingRun", metadata = { generation = 1 },
  status = { phase = "Succeeded", conditions = { cond("Ready", "True", 1, "Succeeded") } } }, "Healthy")
