// convert SIGKILLed at random moments, half 2 of 200 (the suite: test/helpers/convert-kill.ts).
import { convertKillSuite } from "../helpers/convert-kill.js";

convertKillSuite(100, 20261207);
