// Loaded before every test file (`node --require`, see the test:unit script in package.json): tests that use
// tfjs's default backend never call initEngine, which is where the tfjs-node advice banner is otherwise silenced.
import { silenceNodeBackendAdvice } from "../lib/backend/node_advice";

silenceNodeBackendAdvice();
