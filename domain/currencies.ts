/**
 * The ISO 4217 codes a command takes: the currencies in use, the fund and precious-metal codes
 * (XAU for gold), and the codes replaced since the 1990s, so that a history of ten or twenty years
 * (a 1997 order in DEM, a 2017 one in VEF) can be imported. A fixed list, not the runtime's
 * (`Intl.supportedValuesOf('currency')`), which differs from one Node build to the next and leaves
 * out the fund and metal codes. Only commands check it: events recorded before it stay readable
 * whatever code they hold (domain/money.ts `Currency`).
 *
 * Without it any three capitals were a currency: a keying error (`ABC` for an order in EUR) left
 * that customer's base-currency figures empty until someone recorded a rate for a currency that
 * does not exist, and the order could not be corrected (an order keeps its currency).
 */
const IN_USE = `AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP
BYN BZD CAD CDF CHF CLP CNY COP CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL
GHS GIP GMD GNF GTQ GYD HKD HNL HRK HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW
KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD
NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP
SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VED VES
VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL`;

/** Fund codes, special drawing rights and precious metals. */
const FUNDS_AND_METALS = `BOV CHE CHW CLF COU MXV USN UYI UYW XDR XSU XUA XAG XAU XPD XPT`;

/** Replaced since the 1990s (the euro's predecessors, redenominations). */
const REPLACED = `ADP ATS AZM BEF BGL BYR CSD CYP DEM EEK ESP FIM FRF GHC GRD IEP ITL LTL LUF LVL MGF MRO MTL MZM
NLG PTE ROL SDD SIT SKK SRG STD TMM TRL VEB VEF XEU YUM ZMK ZWD ZWN ZWR`;

const CODES: ReadonlySet<string> = new Set([IN_USE, FUNDS_AND_METALS, REPLACED].join(' ').split(/\s+/));

export const isIsoCurrency = (code: string): boolean => CODES.has(code);
