// convert SIGKILLed at random moments, half 1 of 200 (the suite: test/helpers/convert-kill.ts).
import { convertKillSuite } from "../helpers/convert-kill.js";

convertKillSuite(100, 20261203);
