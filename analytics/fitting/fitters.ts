import { fitBgNbd } from '../models/bgnbd.ts';
import { trainChurnModels } from '../models/churn-training.ts';
import { forecastRevenue } from '../models/forecast.ts';
import { fitGammaGamma } from '../models/gamma-gamma.ts';
import { fitClusters } from '../models/segment-clusters.ts';

/**
 * The fits that take seconds of CPU on a large customer base, run by the fitting thread (thread.ts):
 * pure functions of plain data, so that their arguments and results cross threads as they are.
 */
export const fitters = { fitBgNbd, fitGammaGamma, trainChurnModels, fitClusters, forecastRevenue };

export type Fitters = typeof fitters;
export type FitterName = keyof Fitters;
